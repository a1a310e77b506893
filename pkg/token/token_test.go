package token

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestEnsureGeneratesOnceAndReuses(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	a, err := Ensure(p, hash, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.String(), "K10"+hash+"::server:") || len(a.Secret) < 16 {
		t.Errorf("token %q", a)
	}
	info, _ := os.Stat(p)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("token mode %o", info.Mode().Perm())
	}
	b, err := Ensure(p, hash, "")
	if err != nil || b != a {
		t.Errorf("second start changed the token: %v %v", b, err)
	}
	c, err := Ensure(p, hash, "mysecret")
	if err != nil || c.Secret != "mysecret" {
		t.Errorf("--token not used: %v %v", c, err)
	}
	data, _ := os.ReadFile(p)
	if strings.TrimSpace(string(data)) != "K10"+hash+"::server:mysecret" {
		t.Errorf("token file %q", data)
	}
}

func TestEnsureRefusesForeignCAHash(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	other := strings.Repeat("f", 64)
	if _, err := Ensure(p, hash, "K10"+other+"::server:abc"); err == nil || !strings.Contains(err.Error(), "CA hash") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Error("token file written for a refused token")
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"", "K10abc::server:x", "K10" + hash + "server:x", "K10" + hash + "::server:", "a b"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	tok, err := Parse("K10" + hash + "::server:s3cret")
	if err != nil || tok.CAHash != hash || tok.User != "server" || tok.Secret != "s3cret" {
		t.Errorf("Parse: %+v %v", tok, err)
	}
}
