package webrtcserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// TestKeyCaptureMatchesDTLS runs real DTLS handshakes on loopback, the node's side as the server
// with the key log and the server hello hook, and checks that the SRTP context made from what they
// captured encrypts what the client's own context (keyed from its DTLS state) decrypts, for each
// cipher suite and SRTP profile a browser may pick (the node's own sealer for GCM, pion's context
// for AES-CM).
func TestKeyCaptureMatchesDTLS(t *testing.T) {
	cases := []struct {
		suite   dtls.CipherSuiteID
		profile dtls.SRTPProtectionProfile
	}{
		{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM},
		{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		{dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.SRTP_AEAD_AES_128_GCM},
		{dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
	}
	for _, tc := range cases {
		t.Run(tc.suite.String()+"/"+srtp.ProtectionProfile(tc.profile).String(), func(t *testing.T) {
			keys, server, client := dtlsHandshake(t, tc.suite, tc.profile)
			want, err := server.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 60)
			if err != nil {
				t.Fatal(err)
			}
			got, err := keys.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 60)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("exported keying material differs from the DTLS connection's")
			}

			local, err := keys.localSealer()
			if err != nil {
				t.Fatal(err)
			}
			cfg := srtp.Config{Profile: srtp.ProtectionProfile(tc.profile)}
			if err := cfg.ExtractSessionKeysFromDTLS(&client, true); err != nil {
				t.Fatal(err)
			}
			remote, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip := func(seq uint16) {
				t.Helper()
				p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 90 * uint32(seq), SSRC: 1234},
					Payload: []byte("a frame of video " + strings.Repeat("x", int(seq%50)))}
				plain, _ := p.Marshal()
				sealed, err := local.seal(nil, plain, p.Header.MarshalSize(), p.SSRC, p.SequenceNumber)
				if err != nil {
					t.Fatal(err)
				}
				opened, err := remote.DecryptRTP(nil, sealed, nil)
				if err != nil {
					t.Fatalf("seq %d: the client cannot decrypt: %v", seq, err)
				}
				if !bytes.Equal(opened, plain) {
					t.Fatalf("seq %d: decrypted packet differs", seq)
				}
			}
			for seq := uint16(65530); seq != 10; seq++ { // across a rollover
				if seq != 65535 && seq != 3 {
					roundTrip(seq)
				}
			}
			// NACKed packets lost before and after the rollover, resent later: the ROC the node
			// infers for an old sequence number is the client's.
			roundTrip(3)
			roundTrip(65535)
			if keys.masterSecret != nil {
				t.Error("the master secret is kept after the context was made")
			}
		})
	}
}

// TestKeyCaptureWithoutHandshake: nothing captured, no context.
func TestKeyCaptureWithoutHandshake(t *testing.T) {
	k := &keyCapture{}
	if _, err := k.localSealer(); err == nil {
		t.Fatal("a context without secrets")
	}
	line := []byte("garbage\nCLIENT_RANDOM zz yy\n\n")
	if n, err := k.Write(line); err != nil || n != len(line) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	k.profile = dtls.SRTP_AEAD_AES_128_GCM
	if _, err := k.localSealer(); err == nil {
		t.Fatal("a context from a garbage key log")
	}
}

// dtlsHandshake runs a DTLS handshake between a client and a server capturing its keys.
func dtlsHandshake(t *testing.T, suite dtls.CipherSuiteID, profile dtls.SRTPProtectionProfile) (*keyCapture, dtls.State, dtls.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sconn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cconn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	ccert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	keys := &keyCapture{}
	server, err := dtls.Server(sconn, cconn.LocalAddr(), &dtls.Config{
		Certificates:           []tls.Certificate{scert},
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		ClientAuth:             dtls.RequireAnyClientCert,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		KeyLogWriter:           keys,
		ServerHelloMessageHook: keys.serverHello,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := dtls.Client(cconn, sconn.LocalAddr(), &dtls.Config{
		Certificates:           []tls.Certificate{ccert},
		CipherSuites:           []dtls.CipherSuiteID{suite},
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{profile},
		InsecureSkipVerify:     true,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	errs := make(chan error, 1)
	go func() { errs <- server.HandshakeContext(ctx) }()
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	ss, ok1 := server.ConnectionState()
	cs, ok2 := client.ConnectionState()
	if !ok1 || !ok2 {
		t.Fatal("no connection state")
	}
	return keys, ss, cs
}
