package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// WebhookEvent is the JSON body POSTed to the auth webhook.
//
//	{"event": "validate", "action": "publish", "protocol": "srt", "stream": "live/x",
//	 "user": "alice", "password": "…", "token": "…", "client_ip": "203.0.113.7",
//	 "session": "5f0c…", "node": "edge-1"}
//
// event is "validate" (answer 2xx to allow; anything else, or no answer within the timeout,
// refuses) or "invalidate" (the session that validate allowed has ended; the answer is ignored).
// An invalidate event carries neither password nor token; session ties it to its validate.
type WebhookEvent struct {
	Event    string `json:"event"`
	Action   string `json:"action"`
	Protocol string `json:"protocol"`
	Stream   string `json:"stream"`
	User     string `json:"user"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
	ClientIP string `json:"client_ip"`
	Session  string `json:"session"`
	Node     string `json:"node,omitempty"`
}

func (a *Authorizer) event(name string, req Request, session string, secrets bool) WebhookEvent {
	e := WebhookEvent{Event: name, Action: string(req.Action), Protocol: req.Protocol, Stream: req.Stream,
		User: req.User, ClientIP: req.ClientIP, Session: session, Node: a.cfg.NodeID}
	if secrets {
		e.Password, e.Token = req.Password, req.Token
	}
	return e
}

// webhook posts events to one URL.
type webhook struct {
	url    string
	host   string // for errors: the URL itself may carry a secret
	client *http.Client
	node   string
}

func newWebhook(raw string, timeout time.Duration, node string) *webhook {
	u, _ := url.Parse(raw) // validated
	return &webhook{url: raw, host: u.Host, node: node, client: &http.Client{
		Timeout: timeout,
		// A redirect is not a 2xx: the answer is the 3xx itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// maxWebhookReply bounds what is read of an answer (it is only drained).
const maxWebhookReply = 64 << 10

// call posts e and returns the answer's status. The error never holds the URL's path or query.
func (w *webhook) call(ctx context.Context, e WebhookEvent) (int, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("encode webhook event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("webhook request to %s: %w", w.host, errors.Unwrap(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "streamfleet-node")
	res, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error repeats the whole URL
		}
		return 0, fmt.Errorf("webhook %s: %w", w.host, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxWebhookReply))
	res.Body.Close()
	return res.StatusCode, nil
}
