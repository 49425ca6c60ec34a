package run

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestApplyChanges(t *testing.T) {
	cfg := ocispec.ImageConfig{Env: []string{"PATH=/bin", "A=1"}, Cmd: []string{"sh"}, WorkingDir: "/srv"}
	err := ApplyChanges(&cfg, []string{
		`CMD ["cat", "foo"]`,
		`entrypoint /init --flag`,
		`ENV A=2 B="two words"`,
		`ENV LEGACY some value`,
		`WORKDIR app`,
		`USER berth:berth`,
		`LABEL team=a "tier=front end"`,
		`EXPOSE 80 53/udp`,
		`STOPSIGNAL SIGQUIT`,
		`VOLUME ["/data"]`,
		`VOLUME /cache /logs`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := ocispec.ImageConfig{
		Cmd:          []string{"cat", "foo"},
		Entrypoint:   []string{"/bin/sh", "-c", "/init --flag"},
		Env:          []string{"PATH=/bin", "A=2", "B=two words", "LEGACY=some value"},
		WorkingDir:   "/srv/app",
		User:         "berth:berth",
		Labels:       map[string]string{"team": "a", "tier": "front end"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		StopSignal:   "SIGQUIT",
		Volumes:      map[string]struct{}{"/data": {}, "/cache": {}, "/logs": {}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestApplyChangesErrors(t *testing.T) {
	for _, c := range []string{
		"RUN echo hi", "CMD", `CMD ["unterminated`, "ENV =x", `LABEL a="b`,
		"EXPOSE 0", "EXPOSE 80/icmp", "STOPSIGNAL SIGNOPE", "VOLUME data", "FROM busybox",
	} {
		var cfg ocispec.ImageConfig
		if err := ApplyChanges(&cfg, []string{c}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: err %v, want InvalidArgument", c, err)
		}
	}
}
