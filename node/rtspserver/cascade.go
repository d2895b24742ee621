package rtspserver

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/bluenviron/gortsplib/v4/pkg/base"
)

// Node-to-node (cascade) pulls.
//
// A relay or an edge pulls a stream from its upstream with DESCRIBE rtsp://up:8554/{stream}?layers=all.
// Such a session carries every layer of every published track as a media of its own, with the
// track's exact codec (rtpmap and fmtp as the hub has them), so the puller rebuilds the same tracks
// and layers. Each media is named by its a=mid (see LayerMID): "t", the track index, then "r" and
// the RID (alphanumeric RIDs), or "x" and the RID in hex (any other RID). A node with a cluster
// secret only serves such pulls to clients that authenticate with RTSP Basic as ClusterUser with the
// secret as password.
//
// While such a session has no packet to send (the stream's publisher, or this node's own upstream,
// is away), the node sends an RTCP APP packet named Heartbeat on its first media every 100 ms after
// 250 ms of silence: a puller counts a silent upstream as stalled only when even heartbeats stop
// (the node or the network is gone), and otherwise waits for it to recover.
const (
	// LayersQuery is the query parameter of a pull of every layer: ?layers=all.
	LayersQuery = "layers"
	// LayersAll is its value.
	LayersAll = "all"
	// ClusterUser is the RTSP Basic user name nodes present with the cluster secret.
	ClusterUser = "streamfleet-node"
	// Heartbeat is the name of the RTCP APP packet of an idle all-layers session.
	Heartbeat = "SFHB"
	// maxRIDLength bounds the RID in a layer mid.
	maxRIDLength = 32
)

// LayerMID names the media of one layer in an all-layers session: track index and RID.
func LayerMID(track int, rid string) string {
	if isAlnum(rid) {
		return "t" + strconv.Itoa(track) + "r" + rid
	}
	return "t" + strconv.Itoa(track) + "x" + hex.EncodeToString([]byte(rid))
}

// ParseLayerMID reads a mid made by LayerMID. It is fed what an upstream sends, so it checks
// everything: the track index is within maxTracks, the RID at most maxRIDLength bytes.
func ParseLayerMID(mid string, maxTracks int) (track int, rid string, err error) {
	rest, ok := strings.CutPrefix(mid, "t")
	if !ok {
		return 0, "", fmt.Errorf("%w: %q does not start with t", ErrBadLayerMID, mid)
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i > 3 || (i > 1 && rest[0] == '0') {
		return 0, "", fmt.Errorf("%w: %q has no track index", ErrBadLayerMID, mid)
	}
	track, _ = strconv.Atoi(rest[:i])
	if track >= maxTracks {
		return 0, "", fmt.Errorf("%w: track %d of at most %d", ErrBadLayerMID, track, maxTracks)
	}
	if i == len(rest) {
		return 0, "", fmt.Errorf("%w: %q has no r or x", ErrBadLayerMID, mid)
	}
	kind, enc := rest[i], rest[i+1:]
	switch kind {
	case 'r':
		if !isAlnum(enc) {
			return 0, "", fmt.Errorf("%w: RID of %q is not alphanumeric", ErrBadLayerMID, mid)
		}
		rid = enc
	case 'x':
		b, err := hex.DecodeString(enc)
		if err != nil || len(b) == 0 {
			return 0, "", fmt.Errorf("%w: RID of %q is not hex", ErrBadLayerMID, mid)
		}
		rid = string(b)
	default:
		return 0, "", fmt.Errorf("%w: %q has no r or x", ErrBadLayerMID, mid)
	}
	if len(rid) > maxRIDLength {
		return 0, "", fmt.Errorf("%w: RID longer than %d bytes", ErrBadLayerMID, maxRIDLength)
	}
	return track, rid, nil
}

func isAlnum(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// allLayers reports whether a read request's query asks for every layer (?layers=all).
func allLayers(query string) bool {
	if query == "" {
		return false
	}
	v, err := url.ParseQuery(query)
	return err == nil && v.Get(LayersQuery) == LayersAll
}

// clusterAuthorized reports whether a request authenticates as a node of the cluster: Basic
// ClusterUser with the secret as password, compared in constant time. It is false without a secret.
func clusterAuthorized(req *base.Request, secret string) bool {
	if secret == "" {
		return false
	}
	h := req.Header["Authorization"]
	if len(h) != 1 {
		return false
	}
	method, cred, ok := strings.Cut(strings.TrimSpace(h[0]), " ")
	if !ok || !strings.EqualFold(method, "Basic") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return false
	}
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(ClusterUser))
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(secret))
	return userOK&passOK == 1
}
