package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pearld/pearld/plugins"
)

// cmdPlugins lists the plugins of the plugins directory: each is started
// once to read its declaration (name, version, data types, configuration
// keys) and stopped.
func cmdPlugins(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plugins", stderr)
	dir := fs.String("plugins-dir", plugins.DefaultDir, "directory of plugin binaries")
	asJSON := fs.Bool("json", false, "print the declarations as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := plugins.List(ctx, *dir, nil)
	if list == nil && err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []*plugins.Description{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(list); eerr != nil {
			return eerr
		}
	} else {
		printPlugins(stdout, *dir, list)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, "pearld plugins:", line)
		}
		return fmt.Errorf("some plugins could not be described")
	}
	return nil
}

func printPlugins(w io.Writer, dir string, list []*plugins.Description) {
	if len(list) == 0 {
		fmt.Fprintf(w, "no plugins in %s\n", dir)
		return
	}
	for i, d := range list {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s %s  (%s)\n", d.Name, d.Version, d.Path)
		if d.Description != "" {
			fmt.Fprintf(w, "  %s\n", d.Description)
		}
		fmt.Fprintf(w, "  data types: %s\n", strings.Join(d.DataTypes, ", "))
		if len(d.Fields) == 0 {
			fmt.Fprintln(w, "  options: none")
			continue
		}
		fmt.Fprintln(w, "  options:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, f := range d.Fields {
			def := f.Default
			switch {
			case f.Required:
				def = "required"
			case def == "":
				def = "-"
			default:
				def = "default " + def
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", f.Name, f.Type, def, f.Description)
		}
		tw.Flush()
	}
}
