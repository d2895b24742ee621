package srtserver

import (
	"fmt"
	"strings"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

// Mode is what an SRT caller asks to do with a stream.
type Mode int

// Modes of the streamid's m= key.
const (
	ModeRequest Mode = iota // read (play) the stream
	ModePublish             // publish to the stream
)

func (m Mode) String() string {
	if m == ModePublish {
		return "publish"
	}
	return "request"
}

// StreamID is a parsed SRT streamid.
type StreamID struct {
	Mode  Mode
	Name  streamname.Name
	Token string // t=, empty when absent
	User  string // u=, informational
}

// maxStreamID is the longest streamid SRT carries (512 bytes).
const maxStreamID = 512

// ParseStreamID parses the streamid of a connection request. It accepts the SRT access-control
// syntax "#!::r={stream},m=publish|request,t={token}" (keys in any order, unknown keys ignored,
// u= allowed, m defaulting to request) and the short forms "publish:{stream}", "read:{stream}"
// and "{stream}" (read).
func ParseStreamID(s string) (StreamID, error) {
	if s == "" {
		return StreamID{}, ErrMissingStreamID
	}
	if len(s) > maxStreamID {
		return StreamID{}, fmt.Errorf("%w: longer than %d bytes", ErrBadStreamID, maxStreamID)
	}
	var id StreamID
	var resource string
	switch {
	case strings.HasPrefix(s, "#!::"):
		seen := map[string]bool{}
		for i, kv := range strings.Split(s[len("#!::"):], ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return StreamID{}, fmt.Errorf("%w: item %d is not key=value", ErrBadStreamID, i+1)
			}
			switch k {
			case "r", "m", "t", "u":
				if seen[k] {
					return StreamID{}, fmt.Errorf("%w: key %q given twice", ErrBadStreamID, k)
				}
				seen[k] = true
			}
			switch k {
			case "r":
				resource = v
			case "m":
				switch v {
				case "publish":
					id.Mode = ModePublish
				case "request":
					id.Mode = ModeRequest
				default:
					return StreamID{}, fmt.Errorf("%w: %q", ErrBadMode, v)
				}
			case "t":
				id.Token = v
			case "u":
				id.User = v
			}
		}
		if !seen["r"] {
			return StreamID{}, fmt.Errorf("%w: no r= (stream name)", ErrBadStreamID)
		}
	case strings.HasPrefix(s, "publish:"):
		id.Mode, resource = ModePublish, s[len("publish:"):]
	case strings.HasPrefix(s, "read:"):
		id.Mode, resource = ModeRequest, s[len("read:"):]
	default:
		resource = s
	}
	name, err := streamname.Parse(resource)
	if err != nil {
		return StreamID{}, fmt.Errorf("%w: %w", ErrBadStreamID, err)
	}
	id.Name = name
	return id, nil
}
