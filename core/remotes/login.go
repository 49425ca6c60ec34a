package remotes

import (
	"context"
	"fmt"
	"net/http"

	"github.com/berthd/berth/core/remotes/hosts"
)

// Login checks the Resolver's credentials for a registry (host[:port], or
// a docker.io alias) against its own server, never a mirror: GET /v2/,
// answering the registry's challenge (basic, or a token requested without
// a scope, as docker login does). nil means the registry accepted them or
// wants none; a refusal is errdefs.ErrUnauthenticated naming the registry.
func (r *Resolver) Login(ctx context.Context, host string) error {
	ref, err := ParseRef(host + "/login-check")
	if err != nil {
		return fmt.Errorf("registry %q: %w", host, err)
	}
	eps, err := r.endpoints(ref.Domain, hosts.CapPull)
	if err != nil {
		return err
	}
	ep := eps[len(eps)-1]
	if ep.Mirror {
		return fmt.Errorf("registry %s: its own server is not configured for pulls", ref.Domain)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.scheme(ctx)+"://"+ep.Host+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := ep.Do(req)
	if err != nil {
		return classify(ep, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return classify(ep, errorResponse(resp))
}
