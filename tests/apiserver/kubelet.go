package main

// A fake kubelet for `kubectl exec` (pods/exec) against the local API
// server: no kubelet runs here, and exec through kube-apiserver goes to the
// kubelet of the pod's Node. This one speaks exactly what a kubelet speaks,
// because it serves the request with the kubelet's own streaming code
// (k8s.io/cri-streaming remotecommand.ServeExec: SPDY and WebSocket, the
// v1-v4 channel protocols, the exit code in the status of the error stream).
// The command runs on this machine, not in a container, and only commands
// given with --allow run.
//
//	tollgate-apiserver kubelet --dir DIR --node NAME --allow tollgate=/path/to/tollgate
//
// It registers itself as the kubelet of Node NAME (created if missing):
// status.addresses InternalIP 127.0.0.1 and
// status.daemonEndpoints.kubeletEndpoint.Port, as a kubelet reports them.
// It serves HTTPS on 127.0.0.1 with a certificate signed by DIR's CA, and
// requires the API server's client certificate (signed by the same CA), as a
// kubelet with --client-ca-file does. Once it serves, one line goes to stdout:
//
//	tollgate-apiserver kubelet: ready https://127.0.0.1:PORT node=NAME

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// allowList is --allow NAME=PATH, repeatable.
type allowList map[string]string

func (a allowList) String() string { return fmt.Sprint(map[string]string(a)) }

func (a allowList) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("--allow %q: want NAME=PATH", v)
	}
	a[name] = path
	return nil
}

func (a allowList) names() []string {
	out := make([]string, 0, len(a))
	for n := range a {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

type fakeKubelet struct {
	node   string
	client kubernetes.Interface
	allow  allowList
}

func runKubelet(argv []string) error {
	fs := flag.NewFlagSet("tollgate-apiserver kubelet", flag.ContinueOnError)
	dir := fs.String("dir", "", "state directory of the API server (its CA and admin kubeconfig)")
	node := fs.String("node", "", "the Node this kubelet serves (created if missing)")
	port := fs.Int("port", 0, "port on 127.0.0.1 (0: a free one)")
	allow := allowList{}
	fs.Var(allow, "allow", "NAME=PATH: a command NAME in an exec runs PATH (repeatable); nothing else runs")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if *dir == "" || *node == "" || len(allow) == 0 {
		return fmt.Errorf("--dir, --node and at least one --allow are required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fmt.Errorf("--dir %q: %w", *dir, err)
	}
	s := &state{dir: abs}
	if err := createKubeletServingCert(s, *node); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(s.kubeletCertPath(*node), s.kubeletKeyPath(*node))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(s.caCertPath())
	if err != nil {
		return err
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s: no certificate", s.caCertPath())
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfigPath())
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		return err
	}
	listenPort := ln.Addr().(*net.TCPAddr).Port
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := registerNode(ctx, client, *node, listenPort); err != nil {
		return err
	}

	k := &fakeKubelet{node: *node, client: client, allow: allow}
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/", k.serveExec)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clientCAs,
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 30 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	fmt.Printf("tollgate-apiserver kubelet: ready https://127.0.0.1:%d node=%s\n", listenPort, *node)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

// registerNode makes sure Node `name` exists and reports this kubelet's
// address and port, as a kubelet's node status does.
func registerNode(ctx context.Context, client kubernetes.Interface, name string, port int) error {
	nodes := client.CoreV1().Nodes()
	_, err := nodes.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
		_, err = nodes.Create(ctx, n, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}}}}`, port)
	if _, err := nodes.Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

// serveExec serves /exec/{namespace}/{pod}/{container}?command=...&output=1...,
// the URL kube-apiserver builds for pods/exec, as the kubelet does.
func (k *fakeKubelet) serveExec(w http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/exec/"), "/")
	if len(parts) != 3 {
		http.NotFound(w, req)
		return
	}
	ns, name, container := parts[0], parts[1], parts[2]
	pod, err := k.client.CoreV1().Pods(ns).Get(req.Context(), name, metav1.GetOptions{})
	if err != nil || pod.Spec.NodeName != k.node || !hasContainer(pod, container) {
		http.Error(w, fmt.Sprintf("pod %s/%s with container %q not found on node %s", ns, name, container, k.node), http.StatusNotFound)
		return
	}
	opts, err := remotecommand.NewOptions(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := req.URL.Query()["command"]
	remotecommand.ServeExec(w, req, k, ns+"/"+name, string(pod.UID), container, cmd, opts,
		4*time.Hour, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// ExecInContainer runs an allowed command on this machine with the
// streams of the exec; a non-zero exit becomes the exit code the client
// sees (remotecommand.ServeExec reports it as NonZeroExitCode).
func (k *fakeKubelet) ExecInContainer(ctx context.Context, pod, uid, container string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	if len(cmd) == 0 {
		return fmt.Errorf("no command")
	}
	path, ok := k.allow[cmd[0]]
	if !ok {
		return fmt.Errorf("%q is not allowed by this test kubelet (allowed: %s)", cmd[0], strings.Join(k.allow.names(), ", "))
	}
	c := exec.CommandContext(ctx, path, cmd[1:]...)
	if in != nil {
		c.Stdin = in
	}
	if out != nil {
		c.Stdout = out
	}
	if errOut != nil {
		c.Stderr = errOut
	}
	err := c.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() >= 0 {
		return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
	}
	return err
}
