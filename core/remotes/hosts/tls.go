package hosts

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
)

// HasTLSSettings reports whether the endpoint changes the default TLS
// client configuration.
func (e Endpoint) HasTLSSettings() bool {
	return len(e.CACerts) > 0 || len(e.ClientCerts) > 0 || e.SkipVerify
}

// TLSConfig builds the TLS client configuration of the endpoint: the system
// roots plus CACerts, the client certificates, and SkipVerify. Errors name
// the file at fault.
func (e Endpoint) TLSConfig() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: e.SkipVerify, //nolint:gosec // only when hosts.toml says skip_verify
	}
	if len(e.CACerts) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, f := range e.CACerts {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("registry %s: ca %s: %w", e.Host, f, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("registry %s: ca %s: no PEM certificate found: %w", e.Host, f, errdefs.ErrInvalidArgument)
			}
		}
		cfg.RootCAs = pool
	}
	for _, pair := range e.ClientCerts {
		cert, err := loadKeyPair(pair)
		if err != nil {
			return nil, fmt.Errorf("registry %s: client %s: %w", e.Host, pair[0], err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

func loadKeyPair(pair [2]string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(pair[0])
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM := certPEM
	if pair[1] != "" {
		if keyPEM, err = os.ReadFile(pair[1]); err != nil {
			return tls.Certificate{}, err
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	return cert, nil
}
