package commands

import (
	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store/keys"
)

// printData writes v as JSON or YAML for scripts, or calls forPeople for
// the table format.
func printData(f *Factory, format output.Format, v any, forPeople func() error) error {
	switch format {
	case output.JSON:
		return output.WriteJSON(f.IO.Out, v)
	case output.YAML:
		return output.WriteYAML(f.IO.Out, v)
	}
	return forPeople()
}

// printKeys prints keys: a table, or an array.
func printKeys(f *Factory, format output.Format, keys []*keys.Key) error {
	return printData(f, format, keys, func() error { return output.KeyTable(f.IO, keys, f.Now()) })
}

// printKey prints one key: labelled lines, or an object.
func printKey(f *Factory, format output.Format, k *keys.Key) error {
	return printData(f, format, k, func() error {
		output.KeyDetails(f.IO, f.IO.Out, k, f.Now())
		return nil
	})
}
