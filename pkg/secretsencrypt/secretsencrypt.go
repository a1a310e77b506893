// Package secretsencrypt keeps Secrets encrypted at rest: the apiserver's
// EncryptionConfiguration with a key generated here (a file in the
// server's TLS folder, shared by every server of a cluster like the CAs),
// the rewrite of Secrets stored in plain text or under a key that is no
// longer the active one, and the status `distro secrets-encrypt` prints.
package secretsencrypt

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/klog/v2"

	"distro/pkg/fsutil"
)

// Settings are the server flags --secrets-encryption and
// --secrets-encryption-provider.
type Settings struct {
	Enabled  bool
	Provider string // aescbc or secretbox
}

// Identity names the provider that stores values in plain text.
const Identity = "identity"

// Load reads a configuration; a missing file is (nil, nil).
func Load(path string) (*apiserverv1.EncryptionConfiguration, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cfg := &apiserverv1.EncryptionConfiguration{}
	if err := json.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(cfg.Resources) != 1 || len(cfg.Resources[0].Providers) == 0 {
		return nil, fmt.Errorf("%s: want one resources entry (secrets) with providers", path)
	}
	return cfg, nil
}

// Ensure makes the configuration at path write Secrets with the provider
// the settings ask for, keeping every key it held so that values written
// before stay readable. With encryption off and never on, it writes
// nothing.
func Ensure(path string, s Settings) error {
	cfg, err := Load(path)
	if err != nil {
		return err
	}
	want := Identity
	if s.Enabled {
		want = s.Provider
	}
	if cfg == nil {
		if !s.Enabled {
			return nil
		}
		cfg = &apiserverv1.EncryptionConfiguration{Resources: []apiserverv1.ResourceConfiguration{{Resources: []string{"secrets"}}}}
		cfg.Kind, cfg.APIVersion = "EncryptionConfiguration", "apiserver.config.k8s.io/v1"
	}
	providers := cfg.Resources[0].Providers
	if len(providers) > 0 && Kind(providers[0]) == want {
		return nil
	}
	// The wanted provider goes first (it writes); the others stay to read
	// what they wrote, identity last so plain values stay readable.
	var first *apiserverv1.ProviderConfiguration
	var rest []apiserverv1.ProviderConfiguration
	for i := range providers {
		if Kind(providers[i]) == want && first == nil {
			first = &providers[i]
			continue
		}
		if Kind(providers[i]) != Identity {
			rest = append(rest, providers[i])
		}
	}
	if first == nil {
		p, err := NewProvider(want)
		if err != nil {
			return err
		}
		first = &p
	}
	out := []apiserverv1.ProviderConfiguration{*first}
	out = append(out, rest...)
	if want != Identity {
		out = append(out, apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}})
	}
	cfg.Resources[0].Providers = out
	if err := Write(path, cfg); err != nil {
		return err
	}
	klog.Infof("secrets encryption: Secrets are now written with %s (%s); the keys of earlier providers stay to read older values", want, path)
	return nil
}

// NewProvider returns a provider of that kind with a new random key.
func NewProvider(kind string) (apiserverv1.ProviderConfiguration, error) {
	if kind == Identity {
		return apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}}, nil
	}
	key, err := NewKey(kind)
	if err != nil {
		return apiserverv1.ProviderConfiguration{}, err
	}
	switch kind {
	case "aescbc":
		return apiserverv1.ProviderConfiguration{AESCBC: &apiserverv1.AESConfiguration{Keys: []apiserverv1.Key{key}}}, nil
	case "secretbox":
		return apiserverv1.ProviderConfiguration{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{key}}}, nil
	}
	return apiserverv1.ProviderConfiguration{}, fmt.Errorf("unknown secrets encryption provider %q", kind)
}

// NewKey returns a random 32-byte key named after its kind and the time.
func NewKey(kind string) (apiserverv1.Key, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return apiserverv1.Key{}, err
	}
	return apiserverv1.Key{Name: fmt.Sprintf("%skey-%d", kind, time.Now().UnixNano()), Secret: base64.StdEncoding.EncodeToString(b)}, nil
}

// Write stores a configuration atomically, mode 0600.
func Write(path string, cfg *apiserverv1.EncryptionConfiguration) error {
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(data, '\n'), 0o600)
}

// Kind is a provider's type: aescbc, secretbox, aesgcm, kms or identity.
func Kind(p apiserverv1.ProviderConfiguration) string {
	switch {
	case p.AESCBC != nil:
		return "aescbc"
	case p.Secretbox != nil:
		return "secretbox"
	case p.AESGCM != nil:
		return "aesgcm"
	case p.KMS != nil:
		return "kms"
	}
	return Identity
}

// Keys are a provider's keys (none for identity and kms).
func Keys(p apiserverv1.ProviderConfiguration) []apiserverv1.Key {
	switch {
	case p.AESCBC != nil:
		return p.AESCBC.Keys
	case p.Secretbox != nil:
		return p.Secretbox.Keys
	case p.AESGCM != nil:
		return p.AESGCM.Keys
	}
	return nil
}

// Active describes what new Secrets are written with: the provider, its
// first key's name, and the prefix the apiserver puts before such values
// in etcd ("" for plain text).
type Active struct {
	Provider, Key, Prefix string
}

// ActiveOf returns the provider and key that write (no configuration:
// plain text).
func ActiveOf(cfg *apiserverv1.EncryptionConfiguration) Active {
	if cfg == nil {
		return Active{Provider: Identity}
	}
	p := cfg.Resources[0].Providers[0]
	kind := Kind(p)
	keys := Keys(p)
	if kind == Identity || len(keys) == 0 {
		return Active{Provider: kind}
	}
	return Active{Provider: kind, Key: keys[0].Name, Prefix: "k8s:enc:" + kind + ":v1:" + keys[0].Name + ":"}
}

// encryptedPrefix starts every value an encrypting provider wrote.
var encryptedPrefix = []byte("k8s:enc:")

// Current says whether an etcd value was written with the active key (or,
// with encryption off, in plain text).
func (a Active) Current(value []byte) bool {
	if a.Prefix == "" {
		return !bytes.HasPrefix(value, encryptedPrefix)
	}
	return bytes.HasPrefix(value, []byte(a.Prefix))
}

// Describe names what a stored value was written with: "plain text" or
// "<provider> key <name>".
func Describe(value []byte) string {
	if !bytes.HasPrefix(value, encryptedPrefix) {
		return "plain text"
	}
	// k8s:enc:<provider>:v1:<key>:<data>
	f := strings.SplitN(string(value), ":", 6)
	if len(f) < 6 {
		return "unknown"
	}
	return f[2] + " key " + f[4]
}
