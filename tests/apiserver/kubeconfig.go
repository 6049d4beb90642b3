package main

import (
	"encoding/base64"
	"fmt"
	"os"
)

// writeKubeconfig writes DIR/kubeconfig: the server's URL and CA and the
// admin's bearer token.
func writeKubeconfig(s *state) error {
	ca, err := os.ReadFile(s.caCertPath())
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: tollgate-local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: tollgate-local
  context:
    cluster: tollgate-local
    user: admin
current-context: tollgate-local
`, s.url(), base64.StdEncoding.EncodeToString(ca), s.token)
	return writeFileAtomic(s.kubeconfigPath(), []byte(text), 0o600)
}
