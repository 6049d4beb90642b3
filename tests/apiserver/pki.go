package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"time"
)

const certValidity = 10 * 365 * 24 * time.Hour

// ensurePKI creates, once, a CA, a serving certificate for 127.0.0.1 signed
// by it, the API server's client certificate towards kubelets, and the key
// that signs and verifies ServiceAccount tokens.
func ensurePKI(s *state) error {
	if !exists(s.caCertPath()) || !exists(s.caKeyPath()) {
		if err := createCA(s); err != nil {
			return err
		}
		// A new CA makes any older serving certificate useless.
		os.Remove(s.servingCertPath())
	}
	if !exists(s.servingCertPath()) || !exists(s.servingKeyPath()) {
		if err := createServingCert(s); err != nil {
			return err
		}
	}
	if !exists(s.kubeletClientCertPath()) || !exists(s.kubeletClientKeyPath()) {
		if err := createKubeletClientCert(s); err != nil {
			return err
		}
	}
	if !exists(s.serviceAccountKeyPath()) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return fmt.Errorf("service account key: %w", err)
		}
		if err := writeKey(s.serviceAccountKeyPath(), key); err != nil {
			return err
		}
	}
	return nil
}

func createCA(s *state) error {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "tollgate-local-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return issue(tmpl, nil, nil, s.caCertPath(), s.caKeyPath())
}

func createServingCert(s *state) error {
	caCert, caKey, err := loadCA(s)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
	}
	return issue(tmpl, caCert, caKey, s.servingCertPath(), s.servingKeyPath())
}

// createKubeletClientCert issues the certificate kube-apiserver presents to
// kubelets (--kubelet-client-certificate), as kubeadm's
// apiserver-kubelet-client.
func createKubeletClientCert(s *state) error {
	caCert, caKey, err := loadCA(s)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"kubeadm:cluster-admins"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return issue(tmpl, caCert, caKey, s.kubeletClientCertPath(), s.kubeletClientKeyPath())
}

// createKubeletServingCert issues a fake kubelet's serving certificate for
// 127.0.0.1 (the InternalIP of its Node), as a kubelet's own.
func createKubeletServingCert(s *state, node string) error {
	caCert, caKey, err := loadCA(s)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:    []string{node},
	}
	return issue(tmpl, caCert, caKey, s.kubeletCertPath(node), s.kubeletKeyPath(node))
}

// issue makes a new P-256 key and a certificate for it from tmpl, signed by
// parent (self-signed when parent is nil), valid from an hour ago for ten
// years, and writes both.
func issue(tmpl, parent *x509.Certificate, parentKey crypto.Signer, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("key for %s: %w", certPath, err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(certValidity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pemBlock("CERTIFICATE", der), 0o644)
}

func loadCA(s *state) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(s.caCertPath())
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", s.caCertPath())
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.caCertPath(), err)
	}
	keyPEM, err := os.ReadFile(s.caKeyPath())
	if err != nil {
		return nil, nil, err
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", s.caKeyPath())
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.caKeyPath(), err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", s.caKeyPath())
	}
	return cert, signer, nil
}

func writeKey(path string, key any) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return writeFileAtomic(path, pemBlock("PRIVATE KEY", der), 0o600)
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
