package commands

import (
	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store/keys"
)

// printData writes v as JSON or YAML for scripts, or calls forPeople for
// the table format.
func printData(io *output.IOStreams, format output.Format, v any, forPeople func() error) error {
	switch format {
	case output.JSON:
		return output.WriteJSON(io.Out, v)
	case output.YAML:
		return output.WriteYAML(io.Out, v)
	}
	return forPeople()
}

// printKeys prints keys: a table, or an array.
func printKeys(d Deps, format output.Format, keys []*keys.Key) error {
	return printData(d.IO, format, keys, func() error { return output.KeyTable(d.IO, keys, d.Now()) })
}

// printKey prints one key: labelled lines, or an object.
func printKey(d Deps, format output.Format, k *keys.Key) error {
	return printData(d.IO, format, k, func() error {
		output.KeyDetails(d.IO, d.IO.Out, k, d.Now())
		return nil
	})
}
