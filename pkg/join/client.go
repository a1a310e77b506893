package join

import (
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
	Server       string // https://host:port
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
	start := time.Now()
	for attempt := 0; ; attempt++ {
		nc, err := c.try(ctx)
		if err == nil {
			return nc, nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return nil, perm.error
		}
		if attempt%5 == 0 {
			klog.Infof("waiting for the server at %s (%.0fs so far): %v", c.Server, time.Since(start).Seconds(), err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (c *Client) try(ctx context.Context) (*NodeConfig, error) {
	// 1. The CA bundle, fetched without verification and then checked
	// against the hash pinned in the token.
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	bundle, err := get(ctx, insecure, c.Server+CACertsPath)
	if err != nil {
		return nil, err
	}
	if c.Token.CAHash != "" {
		if got := pki.CAHash(bundle); got != c.Token.CAHash {
			return nil, permanentError{fmt.Errorf("the server's CA (hash %s…) does not match the CA hash in the token (%s…): wrong server, or a token from another cluster", got[:12], c.Token.CAHash[:12])}
		}
	} else {
		klog.Warning("the token has no CA hash (not a K10 token): the server's CA is trusted on first use")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return nil, permanentError{fmt.Errorf("the server's %s is not a PEM CA bundle", CACertsPath)}
	}
	// 2. The node's credentials, over verified TLS, with the secret.
	verified := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Server+NodePath, nil)
	if err != nil {
		return nil, permanentError{err}
	}
	req.SetBasicAuth(c.Token.User, c.Token.Secret)
	req.Header.Set(headerNodeName, c.NodeName)
	req.Header.Set(headerNodePassword, c.NodePassword)
	req.Header.Set(headerNodeIP, strings.Join(c.NodeIPs, ","))
	resp, err := verified.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, permanentError{errors.New("the server rejected the token")}
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest:
		return nil, permanentError{fmt.Errorf("the server refused to join this node: %s", strings.TrimSpace(string(body)))}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("join: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var nc NodeConfig
	if err := json.Unmarshal(body, &nc); err != nil {
		return nil, fmt.Errorf("join: bad answer: %w", err)
	}
	return &nc, nil
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
