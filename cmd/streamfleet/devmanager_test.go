package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/token"
)

// TestDevTokens: the dev banner's tokens verify with the generated key the nodes trust, for any
// stream and only their own action, and the banner's pages and commands carry them.
func TestDevTokens(t *testing.T) {
	secret := randomHex(32)
	tok, err := mintDevTokens(secret)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := token.NewHS256Key([]byte(secret))
	keys := []token.Key{key}
	if _, err := token.Verify(tok.Publish, keys, "live/anything", token.ActionPublish, time.Now()); err != nil {
		t.Errorf("publish token: %v", err)
	}
	if _, err := token.Verify(tok.Play, keys, "a/b/c", token.ActionPlay, time.Now()); err != nil {
		t.Errorf("play token: %v", err)
	}
	if _, err := token.Verify(tok.Play, keys, "live/x", token.ActionPublish, time.Now()); err == nil {
		t.Error("the play token allows publishing")
	}
	other, _ := token.NewHS256Key([]byte(randomHex(32)))
	if _, err := token.Verify(tok.Play, []token.Key{other}, "live/x", token.ActionPlay, time.Now()); err == nil {
		t.Error("another key verifies the dev token")
	}
	var b bytes.Buffer
	printDevURLs(&b, "http://127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8189", tok,
		append(srtDevLines("127.0.0.1:9000", tok), rtspDevLines("127.0.0.1:8554", tok)...)...)
	for _, want := range []string{
		"/publish?stream=live/test&token=" + tok.Publish, "/watch?stream=live/test&token=" + tok.Play,
		"m=publish,t=" + tok.Publish, "m=request,t=" + tok.Play, "live/test?token=" + tok.Publish,
		"--publish-token " + tok.Publish + " --token " + tok.Play,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dev banner lacks %q", want)
		}
	}
}
