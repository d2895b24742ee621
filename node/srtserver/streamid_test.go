package srtserver

import (
	"errors"
	"strings"
	"testing"
)

func TestParseStreamID(t *testing.T) {
	tests := []struct {
		in      string
		want    StreamID
		wantErr error
	}{
		{in: "live/test", want: StreamID{Mode: ModeRequest, Name: "live/test"}},
		{in: "read:live/test", want: StreamID{Mode: ModeRequest, Name: "live/test"}},
		{in: "publish:live/test", want: StreamID{Mode: ModePublish, Name: "live/test"}},
		{in: "#!::r=live/test,m=publish", want: StreamID{Mode: ModePublish, Name: "live/test"}},
		{in: "#!::m=publish,r=live/test,t=secret", want: StreamID{Mode: ModePublish, Name: "live/test", Token: "secret"}},
		{in: "#!::r=a/b/c/d,m=request,u=alice,x=ignored,s=session", want: StreamID{Mode: ModeRequest, Name: "a/b/c/d", User: "alice"}},
		{in: "#!::r=live/x", want: StreamID{Mode: ModeRequest, Name: "live/x"}},
		{in: "#!::t=a=b,r=s", want: StreamID{Mode: ModeRequest, Name: "s", Token: "a=b"}},
		{in: "", wantErr: ErrMissingStreamID},
		{in: "#!::", wantErr: ErrBadStreamID},
		{in: "#!::m=publish", wantErr: ErrBadStreamID},
		{in: "#!::r=live/x,m=bidirectional", wantErr: ErrBadMode},
		{in: "#!::r=live/x,garbage", wantErr: ErrBadStreamID},
		{in: "#!::r=live/x,r=live/y", wantErr: ErrBadStreamID},
		{in: "#!::r=,m=publish", wantErr: ErrBadStreamID},
		{in: "publish:", wantErr: ErrBadStreamID},
		{in: "read:bad name", wantErr: ErrBadStreamID},
		{in: "play:live/x", wantErr: ErrBadStreamID},
		{in: "a/b/c/d/e", wantErr: ErrBadStreamID},
		{in: "live/../x", wantErr: ErrBadStreamID},
		{in: "\x00\xff", wantErr: ErrBadStreamID},
		{in: strings.Repeat("a", 600), wantErr: ErrBadStreamID},
	}
	for _, tt := range tests {
		got, err := ParseStreamID(tt.in)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ParseStreamID(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseStreamID(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseStreamID(f *testing.F) {
	for _, s := range []string{"", "live/test", "publish:live/test", "read:a/b", "#!::r=live/x,m=publish,t=tok",
		"#!::m=request,u=u,r=x", "#!::r=x,m=bad", "#!::,,,", "#!::r=a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseStreamID(s)
		if err != nil {
			if !errors.Is(err, ErrMissingStreamID) && !errors.Is(err, ErrBadStreamID) && !errors.Is(err, ErrBadMode) {
				t.Fatalf("ParseStreamID(%q): error %v wraps no sentinel", s, err)
			}
			if id != (StreamID{}) {
				t.Fatalf("ParseStreamID(%q): %+v with error", s, id)
			}
			return
		}
		if id.Name == "" || (id.Mode != ModePublish && id.Mode != ModeRequest) {
			t.Fatalf("ParseStreamID(%q) = %+v", s, id)
		}
		if strings.Contains(string(id.Name), ",") || strings.Contains(string(id.Name), ":") {
			t.Fatalf("ParseStreamID(%q): name %q", s, id.Name)
		}
	})
}
