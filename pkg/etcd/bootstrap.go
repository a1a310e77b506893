package etcd

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BootstrapKey holds the cluster's shared files (CAs and the
// service-account key), sealed with the join token's secret, so that a
// snapshot can be restored on a fresh server given the token.
const BootstrapKey = "/distro/bootstrap"

const (
	sealMagic = "distro-bootstrap-v1\n"
	sealIter  = 100_000
)

// ErrBootstrapSecret means the secret does not open the sealed data.
var ErrBootstrapSecret = errors.New("the token's secret does not open this cluster's bootstrap data: use the token of the cluster the snapshot was taken from")

// SealBootstrap encrypts files with AES-256-GCM under a key derived from
// the token secret (PBKDF2-SHA256, random salt).
func SealBootstrap(secret string, files map[string][]byte) ([]byte, error) {
	plain, err := json.Marshal(files)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	aead, err := bootstrapAEAD(secret, salt)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte(sealMagic), salt...)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, []byte(sealMagic)), nil
}

// OpenBootstrap decrypts what SealBootstrap made.
func OpenBootstrap(secret string, sealed []byte) (map[string][]byte, error) {
	rest, ok := bytes.CutPrefix(sealed, []byte(sealMagic))
	if !ok || len(rest) < 16+12 {
		return nil, errors.New("the bootstrap data is not in a format this distro reads")
	}
	aead, err := bootstrapAEAD(secret, rest[:16])
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, rest[16:16+n], rest[16+n:], []byte(sealMagic))
	if err != nil {
		return nil, ErrBootstrapSecret
	}
	var files map[string][]byte
	if err := json.Unmarshal(plain, &files); err != nil {
		return nil, err
	}
	return files, nil
}

func bootstrapAEAD(secret string, salt []byte) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, secret, salt, sealIter, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// StoreBootstrap keeps the sealed shared files in etcd: written when etcd
// holds none, or holds other files or files sealed with another secret.
// It says whether it wrote.
func (c Config) StoreBootstrap(ctx context.Context, secret string, files map[string][]byte) (bool, error) {
	cc, err := c.ClientConfig()
	if err != nil {
		return false, err
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, BootstrapKey)
	if err != nil {
		return false, err
	}
	if len(resp.Kvs) == 1 {
		if have, err := OpenBootstrap(secret, resp.Kvs[0].Value); err == nil && maps.EqualFunc(have, files, bytes.Equal) {
			return false, nil
		}
	}
	sealed, err := SealBootstrap(secret, files)
	if err != nil {
		return false, err
	}
	if _, err := cli.Put(ctx, BootstrapKey, string(sealed)); err != nil {
		return false, fmt.Errorf("etcd: storing the bootstrap data: %w", err)
	}
	return true, nil
}
