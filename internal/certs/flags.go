package certs

import (
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"
)

// Files are a server's --tls-* flags: it serves TLS with the certificate
// and key in these files, and mutual TLS with ClientCAFile, reloaded when
// they change. The zero value is TLS off.
type Files struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// AddFlags adds --tls-cert, --tls-key and --tls-client-ca to f.
func (o *Files) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.CertFile, "tls-cert", "", "PEM certificate (chain) file: serve TLS (with --tls-key); reloaded when the file changes")
	f.StringVar(&o.KeyFile, "tls-key", "", "PEM private key file of --tls-cert")
	f.StringVar(&o.ClientCAFile, "tls-client-ca", "", "PEM file of the CAs whose client certificates are accepted: every client must then present one (mutual TLS); reloaded when the file changes")
}

// Load returns the Reloader of the files, or nil when none is given (TLS
// off). A client CA without a certificate and key is an error, as is a
// certificate without its key.
func (o Files) Load(log *slog.Logger) (*Reloader, error) {
	switch {
	case o.CertFile == "" && o.KeyFile == "" && o.ClientCAFile == "":
		return nil, nil
	case o.CertFile == "" || o.KeyFile == "":
		return nil, fmt.Errorf("TLS needs both --tls-cert and --tls-key")
	}
	r, err := New(Options{CertFile: o.CertFile, KeyFile: o.KeyFile, ClientCAFile: o.ClientCAFile, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return r, nil
}
