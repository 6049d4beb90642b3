package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// ports are the three TCP ports on 127.0.0.1 a server uses. They are chosen
// on the first start and recorded, so that a restart serves the same URL.
type ports struct {
	APIServer int `json:"apiserver"`
	Etcd      int `json:"etcd"`
	EtcdPeer  int `json:"etcd_peer"`
}

// state is what a server keeps in its directory.
type state struct {
	dir   string
	ports ports
	token string // the admin's bearer token
}

func (s *state) path(name string) string       { return filepath.Join(s.dir, name) }
func (s *state) etcdDir() string               { return s.path("etcd") }
func (s *state) caCertPath() string            { return s.path("pki/ca.crt") }
func (s *state) caKeyPath() string             { return s.path("pki/ca.key") }
func (s *state) servingCertPath() string       { return s.path("pki/serving.crt") }
func (s *state) servingKeyPath() string        { return s.path("pki/serving.key") }
func (s *state) serviceAccountKeyPath() string { return s.path("pki/service-account.key") }
func (s *state) tokenFilePath() string         { return s.path("tokens.csv") }
func (s *state) kubeconfigPath() string        { return s.path("kubeconfig") }
func (s *state) url() string                   { return fmt.Sprintf("https://127.0.0.1:%d", s.ports.APIServer) }

// The API server's client certificate towards kubelets (exec, logs), and
// the serving certificate of a fake kubelet (kubelet.go); both signed by
// the CA, which the API server uses to verify kubelets.
func (s *state) kubeletClientCertPath() string { return s.path("pki/apiserver-kubelet-client.crt") }
func (s *state) kubeletClientKeyPath() string  { return s.path("pki/apiserver-kubelet-client.key") }
func (s *state) kubeletCertPath(node string) string {
	return s.path("pki/kubelet-" + node + ".crt")
}
func (s *state) kubeletKeyPath(node string) string { return s.path("pki/kubelet-" + node + ".key") }

// loadOrCreateState reads the state in dir, creating what is missing. Ports
// given non-zero in want replace the recorded ones.
func loadOrCreateState(dir string, want ports) (*state, error) {
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	s := &state{dir: dir}

	if err := readJSON(s.path("ports.json"), &s.ports); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, p := range []struct {
		have *int
		want int
	}{{&s.ports.APIServer, want.APIServer}, {&s.ports.Etcd, want.Etcd}, {&s.ports.EtcdPeer, want.EtcdPeer}} {
		if p.want != 0 {
			*p.have = p.want
		}
	}
	if err := pickFreePorts(&s.ports.APIServer, &s.ports.Etcd, &s.ports.EtcdPeer); err != nil {
		return nil, err
	}
	if err := writeJSON(s.path("ports.json"), s.ports); err != nil {
		return nil, err
	}

	token, err := loadOrCreateToken(s.path("admin.token"))
	if err != nil {
		return nil, err
	}
	s.token = token
	// kube-apiserver's static token file: token,user,uid,"groups".
	line := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", token)
	if err := writeFileAtomic(s.tokenFilePath(), []byte(line), 0o600); err != nil {
		return nil, err
	}

	if err := ensurePKI(s); err != nil {
		return nil, err
	}
	if err := writeKubeconfig(s); err != nil {
		return nil, err
	}
	return s, nil
}

// pickFreePorts sets each zero port to one the kernel hands out as free. All
// listeners stay open until every port is chosen, so the ports differ.
func pickFreePorts(ps ...*int) error {
	var open []net.Listener
	defer func() {
		for _, l := range open {
			l.Close()
		}
	}()
	for _, p := range ps {
		if *p != 0 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("choosing a free port on 127.0.0.1: %w", err)
		}
		open = append(open, l)
		*p = l.Addr().(*net.TCPAddr).Port
	}
	return nil
}

func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) > 0 {
		return string(b), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("admin token %s: %w", path, err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	token := hex.EncodeToString(raw)
	return token, writeFileAtomic(path, []byte(token), 0o600)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

// writeFileAtomic writes a temporary file beside path and renames it, so a
// reader never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	return nil
}
