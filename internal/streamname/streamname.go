// Package streamname defines the stream name: a path of 1–4 segments of [A-Za-z0-9_.-], such as
// "live/match1". Every protocol front end parses names through it, so the rule lives in one place.
package streamname

import (
	"errors"
	"fmt"
	"strings"
)

// MaxSegments is the most path segments a stream name may have.
const MaxSegments = 4

// MaxLength caps the length of a whole name, so names stay usable as keys and in URLs.
const MaxLength = 255

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid stream name")

// Name is a validated stream name.
type Name string

// String returns the name as text.
func (n Name) String() string { return string(n) }

// Parse validates s as a stream name.
func Parse(s string) (Name, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(s) > MaxLength {
		return "", fmt.Errorf("%w: longer than %d characters", ErrInvalid, MaxLength)
	}
	segments := strings.Split(s, "/")
	if len(segments) > MaxSegments {
		return "", fmt.Errorf("%w: more than %d path segments", ErrInvalid, MaxSegments)
	}
	for _, seg := range segments {
		if seg == "" {
			return "", fmt.Errorf("%w: empty path segment in %q", ErrInvalid, s)
		}
		if seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: %q is not allowed as a segment", ErrInvalid, seg)
		}
		for i := 0; i < len(seg); i++ {
			if !allowed(seg[i]) {
				return "", fmt.Errorf("%w: character %q not allowed (use A-Z a-z 0-9 _ . -)", ErrInvalid, seg[i])
			}
		}
	}
	return Name(s), nil
}

func allowed(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}
