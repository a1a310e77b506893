package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"distro/pkg/pki"
	"distro/pkg/token"
)

// Client is the agent's side of the join.
type Client struct {
	Server string // https://host:port
	// Fallback servers are tried in turn when Server cannot be reached
	// (an agent's saved list of servers).
	Fallback     []string
	Token        token.Token
	NodeName     string
	NodePassword string
	NodeIPs      []string
}

// permanentError ends the join: retrying cannot help.
type permanentError struct{ error }

// Join fetches the node's credentials, retrying (and saying so) while the
// server cannot be reached. A CA that does not match the token's hash, a
// rejected token or node password end it with an error.
func (c *Client) Join(ctx context.Context) (*NodeConfig, error) {
	var nc NodeConfig
	err := c.retry(ctx, func(base string) error {
		return c.post(ctx, base, NodePath, "node", nil, &nc, func(req *http.Request) {
			req.Header.Set(headerNodeName, c.NodeName)
			req.Header.Set(headerNodePassword, c.NodePassword)
			req.Header.Set(headerNodeIP, strings.Join(c.NodeIPs, ","))
		})
	})
	if err != nil {
		return nil, err
	}
	return &nc, nil
}

// JoinServer asks the cluster to admit this server, retrying while the
// server cannot be reached or is not ready to add a member (another server
// still joining). A rejected token, a CA that does not match the token and
// a settings mismatch end it with an error.
func (c *Client) JoinServer(ctx context.Context, in ServerJoinRequest) (*ServerJoinResponse, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	var out ServerJoinResponse
	if err := c.retry(ctx, func(base string) error { return c.post(ctx, base, ServerPath, "server", body, &out, nil) }); err != nil {
		return nil, err
	}
	return &out, nil
}

// retry runs try until it succeeds or fails for good, logging every fifth
// attempt; attempts go to Server and the Fallback servers in turn.
func (c *Client) retry(ctx context.Context, try func(base string) error) error {
	start := time.Now()
	bases := append([]string{c.Server}, c.Fallback...)
	for attempt := 0; ; attempt++ {
		base := bases[attempt%len(bases)]
		err := try(base)
		if err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return perm.error
		}
		if attempt%5 == 0 {
			klog.Infof("waiting for the server at %s (%.0fs so far): %v", base, time.Since(start).Seconds(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// post sends body to path over TLS verified against the server's CA, the
// CA itself pinned by the token's hash, and decodes the JSON answer.
func (c *Client) post(ctx context.Context, base, path, what string, body []byte, out any, setHeaders func(*http.Request)) error {
	// 1. The CA bundle, fetched without verification and then checked
	// against the hash pinned in the token.
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	bundle, err := get(ctx, insecure, base+CACertsPath)
	if err != nil {
		return err
	}
	if c.Token.CAHash != "" {
		if got := pki.CAHash(bundle); got != c.Token.CAHash {
			return permanentError{fmt.Errorf("the server's CA (hash %s…) does not match the CA hash in the token (%s…): wrong server, or a token from another cluster", got[:12], c.Token.CAHash[:12])}
		}
	} else {
		klog.Warning("the token has no CA hash (not a K10 token): the server's CA is trusted on first use")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return permanentError{fmt.Errorf("the server's %s is not a PEM CA bundle", CACertsPath)}
	}
	// 2. The request, over verified TLS, with the secret.
	verified := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return permanentError{err}
	}
	req.SetBasicAuth(c.Token.User, c.Token.Secret)
	if setHeaders != nil {
		setHeaders(req)
	}
	resp, err := verified.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return permanentError{errors.New("the server rejected the token")}
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusConflict:
		return permanentError{fmt.Errorf("the server refused to join this %s: %s", what, strings.TrimSpace(string(data)))}
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("join: %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("join: bad answer: %w", err)
	}
	return nil
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, permanentError{err}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}
