package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxAnswerSize bounds the SDP answer (and error bodies) read from a server.
const maxAnswerSize = 1 << 20

// signaler performs the WHIP and WHEP HTTP exchanges (RFC 9725): POST an SDP offer, get
// 201 Created with the answer and the session's Location; DELETE the Location to end it.
type signaler struct {
	client *http.Client
	token  string
}

// exchange POSTs offer to endpoint and returns the answer and the absolute session URL (empty
// when the server sent no Location). Redirects (a stream manager's 307) are followed.
func (s *signaler) exchange(ctx context.Context, endpoint, offer string) (answer, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return "", "", fmt.Errorf("build request for %s: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Accept", "application/sdp")
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", errHTTP, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize))
	if err != nil {
		return "", "", fmt.Errorf("%w: read answer from %s: %w", errHTTP, endpoint, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("%w: POST %s: %s: %s", ErrUnexpectedStatus, endpoint, resp.Status,
			strings.TrimSpace(string(bytes.ToValidUTF8(body[:min(len(body), 200)], nil))))
	}
	if len(body) == 0 {
		return "", "", fmt.Errorf("%w: empty body from %s", ErrInvalidAnswer, endpoint)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		ref, err := url.Parse(loc)
		if err != nil {
			return "", "", fmt.Errorf("%w: Location %q: %w", ErrInvalidAnswer, loc, err)
		}
		location = resp.Request.URL.ResolveReference(ref).String()
	}
	return string(body), location, nil
}

// remove DELETEs a session. A 404 counts as done: the server already ended it.
func (s *signaler) remove(ctx context.Context, location string) error {
	if location == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, location, nil)
	if err != nil {
		return fmt.Errorf("build DELETE %s: %w", location, err)
	}
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errHTTP, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerSize))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("%w: DELETE %s: %s", ErrUnexpectedStatus, location, resp.Status)
	}
	return nil
}

func (s *signaler) authorize(req *http.Request) {
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
}
