package main

import "fmt"

// serviceAccountIssuer is the `iss` of ServiceAccount tokens, as on most
// clusters.
const serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// apiServerFlags are the kube-apiserver flags for a server with state s.
func apiServerFlags(s *state, serviceRange string) []string {
	return []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", s.ports.APIServer),
		"--etcd-servers=" + s.etcdURL(),
		"--tls-cert-file=" + s.servingCertPath(),
		"--tls-private-key-file=" + s.servingKeyPath(),
		"--client-ca-file=" + s.caCertPath(),
		// The admin authenticates with a static bearer token (system:masters).
		"--token-auth-file=" + s.tokenFilePath(),
		"--authorization-mode=Node,RBAC",
		// ServiceAccount tokens (TokenRequest API, `kubectl create token`).
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + s.serviceAccountKeyPath(),
		"--service-account-signing-key-file=" + s.serviceAccountKeyPath(),
		"--service-cluster-ip-range=" + serviceRange,
		// The ServiceAccount admission plugin rejects a Pod whose namespace has
		// no ServiceAccount "default", which only kube-controller-manager creates.
		"--disable-admission-plugins=ServiceAccount",
		// DaemonSets like Tollgate's have privileged containers.
		"--allow-privileged=true",
		// The "kubernetes" Service's endpoints would be 127.0.0.1, which an
		// Endpoints object may not hold.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		// Exec, attach, logs and port-forward go to the kubelet of the pod's
		// Node. No kubelet runs, but a test may start a fake one
		// (`tollgate-apiserver kubelet`, kubelet.go): the API server verifies
		// its certificate with the CA and presents its own client certificate,
		// and dials the Node's InternalIP (127.0.0.1) only.
		"--kubelet-certificate-authority=" + s.caCertPath(),
		"--kubelet-client-certificate=" + s.kubeletClientCertPath(),
		"--kubelet-client-key=" + s.kubeletClientKeyPath(),
		"--kubelet-preferred-address-types=InternalIP",
	}
}
