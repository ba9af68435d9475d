package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// runVersion is `fleetjobs version`.
func runVersion(args []string, stdout io.Writer) error {
	fs := newFlagSet("version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "fleetjobs %s (event store protocol: KurrentDB %s, %s)\n", version(), server.Version, runtime.Version())
	return err
}

// version is the module version, or the VCS revision the binary was built
// from: read from the build info, so that no variable needs setting at link
// time.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return rev + modified
	}
	if v == "" {
		return "(devel)"
	}
	return v
}
