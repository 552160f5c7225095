package commands

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
)

// version is set at release time with
// -ldflags "-X github.com/keyctl/keyctl/commands.version=v1.2.3".
var version = ""

// Version is keyctl's version: the release's, else the module version the
// binary was built from, else its VCS revision, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}

// VersionOptions are the parsed flags of keyctl version.
type VersionOptions struct {
	IO     *output.IOStreams
	Format output.Format
}

func newVersionCmd(f *Factory, runF func(context.Context, *VersionOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print keyctl's version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &VersionOptions{IO: f.IO}
			var err error
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runVersion(cmd.Context(), opts)
		},
	}
}

func runVersion(_ context.Context, opts *VersionOptions) error {
	v := struct {
		Version string `json:"version"`
		Go      string `json:"go"`
		OS      string `json:"os"`
		Arch    string `json:"arch"`
	}{Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH}
	return printData(opts.IO, opts.Format, v, func() error {
		_, err := fmt.Fprint(opts.IO.Out, versionLine())
		return err
	})
}

// versionLine is what keyctl version and keyctl --version print.
func versionLine() string {
	return fmt.Sprintf("keyctl %s (%s, %s/%s)\n", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
