package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// rebootEvery is the mean time between reboots of one device with -reboots.
const rebootEvery = 10 * time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "pearl-sim:", err)
		os.Exit(1)
	}
}

// errUsage marks a command line error already reported by the flag set.
var errUsage = errors.New("usage")

// run parses args, serves the fleet and returns when ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pearl-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 1, "number of devices")
	listen := fs.String("listen", "127.0.0.1:8400", "address of the first device; the others listen on the next ports")
	user := fs.String("user", pearltest.DefaultUsername, "Basic auth user of every device")
	password := fs.String("password", "", "Basic auth password of every device (may be empty)")
	seed := fs.Int64("seed", 1, "seed of the layouts and of the random changes")
	tick := fs.Duration("tick", time.Second, "how often something may happen")
	faults := fs.Float64("faults", 0, "probability per device and tick of a transient fault, 0 to 1")
	controlDelay := fs.Duration("control-delay", pearltest.DefaultControlDelay, "how long a started publisher stays starting")
	reboots := fs.Bool("reboots", false, fmt.Sprintf("reboot devices now and then (each about every %v)", rebootEvery))
	useTLS := fs.Bool("tls", false, "serve HTTPS with self-signed certificates")
	maxConcurrent := fs.Int("max-concurrent", 0, "fail requests beyond this many in flight per device with 503 (0: no limit)")
	verbose := fs.Bool("v", false, "log every publisher change")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("parsing arguments: unexpected %q", strings.Join(fs.Args(), " "))
	case *n < 1:
		return fmt.Errorf("parsing arguments: -n must be at least 1, got %d", *n)
	case *tick <= 0:
		return fmt.Errorf("parsing arguments: -tick must be positive, got %v", *tick)
	case *faults < 0 || *faults > 1:
		return fmt.Errorf("parsing arguments: -faults must be between 0 and 1, got %v", *faults)
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts := pearltest.FleetOptions{
		N:             *n,
		Listen:        *listen,
		Username:      *user,
		Password:      *password,
		TLS:           *useTLS,
		Seed:          *seed,
		Tick:          *tick,
		FaultRate:     *faults,
		ControlDelay:  *controlDelay,
		MaxConcurrent: *maxConcurrent,
		Logger:        log,
	}
	if *reboots {
		opts.RebootRate = min(tick.Seconds()/rebootEvery.Seconds(), 1)
	}
	fleet, err := pearltest.NewFleet(opts)
	if err != nil {
		return err
	}
	defer fleet.Close()

	for i, s := range fleet.Servers() {
		var ids []string
		for _, ch := range s.Device.Channels() {
			ids = append(ids, ch.ID)
		}
		fmt.Fprintf(stdout, "%s device=%d channels=%s\n", s.URL, i+1, strings.Join(ids, ","))
	}
	log.Info("serving simulated Pearls", "devices", *n, "user", *user, "seed", *seed)
	err = fleet.Run(ctx)
	log.Info("shutting down")
	return err
}
