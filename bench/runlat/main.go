// Command runlat measures `run --rm IMAGE true` through berthd's API, as
// ctr run --rm does it, in one process: create the container, prepare its
// snapshot, create, start, wait for and delete the task, delete the
// container and its snapshot. It prints one latency per line in
// milliseconds, then the median.
//
//	runlat -address /run/berth/berth.sock -n 50 -runtime io.berth.runc.v2
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/cmd/berth/cli"
	"github.com/berthd/berth/core/oci"
	berthimages "github.com/berthd/berth/proto/berth/images/v1"
)

func main() {
	address := flag.String("address", cli.DefaultAddress, "berthd socket")
	n := flag.Int("n", 20, "runs")
	runtime := flag.String("runtime", "io.berth.runc.v2", "runtime name")
	image := flag.String("image", "docker.io/library/busybox:latest", "image, unpacked")
	quiet := flag.Bool("q", false, "print only the median")
	flag.BoolVar(&showSteps, "steps", false, "also print the median time of each step")
	flag.Parse()
	if err := run(*address, *image, *runtime, *n, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "runlat:", err)
		os.Exit(1)
	}
}

// showSteps makes runOnce record how long each step takes, so the median
// of each can be printed: where the time of one run goes.
var (
	showSteps bool
	steps     = map[string][]float64{}
	stepOrder []string
)

// step records the time since *t under name and resets *t.
func step(name string, t *time.Time) {
	if !showSteps {
		return
	}
	if _, ok := steps[name]; !ok {
		stepOrder = append(stepOrder, name)
	}
	steps[name] = append(steps[name], float64(time.Since(*t).Microseconds())/1000)
	*t = time.Now()
}

type client struct {
	containers containersapi.ContainersClient
	snapshots  snapshotsapi.SnapshotsClient
	tasks      tasksapi.TasksClient
	runtime    string
	image      string
	chainID    string
	sn         string
	config     ocispec.ImageConfig
}

func run(address, image, runtime string, n int, quiet bool) error {
	c, err := cli.Dial(address, "default")
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	imgs := berthimages.NewImagesClient(c.Conn())
	u, err := imgs.Unpack(ctx, &berthimages.UnpackRequest{Name: image})
	if err != nil {
		return err
	}
	in, err := imgs.Inspect(ctx, &berthimages.InspectRequest{Name: image})
	if err != nil {
		return err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(in.Config, &cfg); err != nil {
		return err
	}
	cl := &client{
		containers: containersapi.NewContainersClient(c.Conn()),
		snapshots:  snapshotsapi.NewSnapshotsClient(c.Conn()),
		tasks:      tasksapi.NewTasksClient(c.Conn()),
		runtime:    runtime, image: image, chainID: u.ChainId, sn: u.Snapshotter, config: cfg.Config,
	}
	var lat []float64
	for i := 0; i < n; i++ {
		start := time.Now()
		code, err := cl.runOnce(ctx, fmt.Sprintf("runlat-%d-%d", os.Getpid(), i))
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("run %d exited %d", i, code)
		}
		ms := float64(time.Since(start).Microseconds()) / 1000
		lat = append(lat, ms)
		if !quiet {
			fmt.Printf("%.1f\n", ms)
		}
	}
	for _, name := range stepOrder {
		fmt.Printf("  %-18s %6.1f ms\n", name, median(steps[name]))
	}
	fmt.Printf("median %.1f ms\n", median(lat))
	return nil
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

// runOnce is one `run --rm IMAGE true`.
func (c *client) runOnce(ctx context.Context, id string) (uint32, error) {
	t := time.Now()
	spec, err := oci.Generate(ctx, "default", id, (&oci.RunConfig{Image: c.config, Overrides: oci.ImageOverrides{Args: []string{"true"}}}).SpecOpts(id)...)
	if err != nil {
		return 0, err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return 0, err
	}
	step("spec", &t)
	_, err = c.containers.Create(ctx, &containersapi.CreateContainerRequest{Container: &containersapi.Container{
		ID: id, Image: c.image, Runtime: &containersapi.Container_Runtime{Name: c.runtime},
		Spec:        &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: data},
		Snapshotter: c.sn, SnapshotKey: id,
	}})
	if err != nil {
		return 0, err
	}
	step("container create", &t)
	// The container record comes first: it keeps the snapshot from
	// garbage collection (no lease needed).
	prep, err := c.snapshots.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Snapshotter: c.sn, Key: id, Parent: c.chainID})
	if err != nil {
		return 0, err
	}
	step("snapshot prepare", &t)
	if _, err := c.tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id, Rootfs: prep.Mounts}); err != nil {
		return 0, err
	}
	step("task create", &t)
	waited := make(chan *tasksapi.WaitResponse, 1)
	waitErr := make(chan error, 1)
	go func() {
		w, err := c.tasks.Wait(ctx, &tasksapi.WaitRequest{ContainerID: id})
		if err != nil {
			waitErr <- err
			return
		}
		waited <- w
	}()
	if _, err := c.tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: id}); err != nil {
		return 0, err
	}
	step("task start", &t)
	var code uint32
	select {
	case w := <-waited:
		code = w.ExitStatus
	case err := <-waitErr:
		return 0, err
	}
	step("wait", &t)
	if _, err := c.tasks.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id}); err != nil {
		return 0, err
	}
	step("task delete", &t)
	// The snapshot goes first, as ctr's cleanup does it: once the container
	// is gone, a garbage collection may take the snapshot at any moment.
	if _, err := c.snapshots.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: c.sn, Key: id}); err != nil {
		return 0, err
	}
	step("snapshot remove", &t)
	_, err = c.containers.Delete(ctx, &containersapi.DeleteContainerRequest{ID: id})
	step("container delete", &t)
	return code, err
}
