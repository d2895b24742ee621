package node

import "github.com/streamfleet/streamfleet/node/auth"

// authConfig is the configuration of the node's one authorizer, which every protocol server asks:
// Config.Auth, with the older WebRTC.PublishToken and PlayToken as the static tokens when Auth
// sets none.
func (c Config) authConfig() auth.Config {
	a := c.Auth
	if a.PublishToken == "" {
		a.PublishToken = c.WebRTC.PublishToken
	}
	if a.PlayToken == "" {
		a.PlayToken = c.WebRTC.PlayToken
	}
	if a.NodeID == "" {
		a.NodeID = c.ID
	}
	return a
}

// Auth is the node's authorizer.
func (n *Node) Auth() *auth.Authorizer { return n.auth }
