// Package token formats and parses distro's join token,
// K10<sha256 hex of the server CA bundle>::server:<secret>, and keeps the
// server's copy in <data-dir>/server/token.
package token

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"distro/pkg/fsutil"
)

// Token is a parsed join token.
type Token struct {
	// CAHash is the pinned CA hash; empty for a bare secret.
	CAHash string
	User   string
	Secret string
}

// String renders the full K10 form.
func (t Token) String() string {
	return fmt.Sprintf("K10%s::%s:%s", t.CAHash, t.User, t.Secret)
}

// Parse accepts a full K10 token or a bare secret.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, fmt.Errorf("token is empty")
	}
	if !strings.HasPrefix(s, "K10") {
		if strings.ContainsAny(s, ": \t\n") {
			return Token{}, fmt.Errorf("token secret must not contain ':' or white space")
		}
		return Token{User: "server", Secret: s}, nil
	}
	hash, creds, ok := strings.Cut(strings.TrimPrefix(s, "K10"), "::")
	if !ok {
		return Token{}, fmt.Errorf("token starts with K10 but has no '::' separator")
	}
	if _, err := hex.DecodeString(hash); err != nil || len(hash) != 64 {
		return Token{}, fmt.Errorf("token CA hash %q is not a SHA-256 hex digest", hash)
	}
	user, secret, ok := strings.Cut(creds, ":")
	if !ok || user == "" || secret == "" {
		return Token{}, fmt.Errorf("token credentials must be <user>:<secret>")
	}
	return Token{CAHash: hash, User: user, Secret: secret}, nil
}

// Ensure returns the server's token. With flag empty it reuses the stored
// token or generates a new secret once; with flag set, its secret becomes
// the server's (and is stored). A K10 token given whose CA hash does not
// match this server's CA is refused.
func Ensure(path, caHash, flag string) (Token, error) {
	var secret string
	if flag != "" {
		t, err := Parse(flag)
		if err != nil {
			return Token{}, fmt.Errorf("--token: %w", err)
		}
		if t.CAHash != "" && t.CAHash != caHash {
			return Token{}, fmt.Errorf("--token: its CA hash does not match this server's CA (%s…)", caHash[:12])
		}
		secret = t.Secret
	} else if data, err := os.ReadFile(path); err == nil {
		t, err := Parse(string(data))
		if err != nil {
			return Token{}, fmt.Errorf("%s: %w", path, err)
		}
		secret = t.Secret
	} else if !os.IsNotExist(err) {
		return Token{}, err
	} else {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return Token{}, err
		}
		secret = hex.EncodeToString(b)
	}
	t := Token{CAHash: caHash, User: "server", Secret: secret}
	old, _ := os.ReadFile(path)
	if strings.TrimSpace(string(old)) != t.String() {
		if len(old) > 0 {
			klog.Infof("join token changed: updating %s", path)
		}
		if err := fsutil.WriteFileAtomic(path, []byte(t.String()+"\n"), 0o600); err != nil {
			return Token{}, err
		}
	}
	return t, nil
}
