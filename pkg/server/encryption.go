package server

import (
	"fmt"

	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/fsutil"
	"distro/pkg/secretsencrypt"
)

// encryptionConfig is the EncryptionConfiguration the apiserver is given:
// with encryption on, or off after it was on (the keys then stay to read
// what they wrote). It only looks; ensureEncryption writes the file.
func encryptionConfig(cfg *config.Server, paths datadir.Server) string {
	if cfg.SecretsEncryption || fsutil.Exists(paths.EncryptionConfig) {
		return paths.EncryptionConfig
	}
	return ""
}

// ensureEncryption writes or updates the EncryptionConfiguration for the
// flags (a key is generated on the first start, or received with the
// cluster's shared files when joining).
func ensureEncryption(cfg *config.Server, paths datadir.Server) error {
	err := secretsencrypt.Ensure(paths.EncryptionConfig, secretsencrypt.Settings{Enabled: cfg.SecretsEncryption, Provider: cfg.SecretsEncryptionProvider})
	if err != nil {
		return fmt.Errorf("secrets encryption: %w", err)
	}
	return nil
}
