package pki

import (
	"crypto/sha256"
	"encoding/hex"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"distro/pkg/fsutil"
)

// KubeconfigBytes renders a kubeconfig with the CA and client credentials
// embedded, so it stays valid when copied elsewhere.
func KubeconfigBytes(server string, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["default"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["default"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	cfg.CurrentContext = "default"
	return clientcmd.Write(*cfg)
}

// WriteKubeconfig writes a kubeconfig atomically with the given mode.
func WriteKubeconfig(path string, mode os.FileMode, server string, caPEM, certPEM, keyPEM []byte) error {
	data, err := KubeconfigBytes(server, caPEM, certPEM, keyPEM)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// WriteKubeconfigFiles writes a kubeconfig that names the CA, certificate
// and key files instead of embedding them: client-go reloads a renewed
// certificate from the files without a restart.
func WriteKubeconfigFiles(path, server, caFile, certFile, keyFile string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["default"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["default"] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	cfg.CurrentContext = "default"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, data, 0o600)
}

// CAHash is the hash agents pin in a K10 token: the SHA-256 of the CA bundle.
func CAHash(bundle []byte) string {
	sum := sha256.Sum256(bundle)
	return hex.EncodeToString(sum[:])
}
