package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// ApplyFile reads a YAML config file whose keys are the long flag names of
// fs and sets every flag that was not given on the command line (flags win).
// A missing file is an error only when explicit is true. Unknown keys, and
// values a flag refuses, are errors that name the key.
func ApplyFile(fs *pflag.FlagSet, path string, explicit bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) && !explicit {
			return nil
		}
		return fmt.Errorf("config file %s: %v", path, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: not valid YAML: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s: expected a mapping of flag names to values", path)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		key, val := top.Content[i].Value, top.Content[i+1]
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return fmt.Errorf("config file %s: line %d: unknown key %q", path, top.Content[i].Line, key)
		}
		if seen[key] {
			return fmt.Errorf("config file %s: line %d: key %q given twice", path, top.Content[i].Line, key)
		}
		seen[key] = true
		if f.Changed {
			continue
		}
		var values []string
		switch val.Kind {
		case yaml.ScalarNode:
			if val.Tag == "!!null" {
				return fmt.Errorf("config file %s: line %d: key %q has no value", path, val.Line, key)
			}
			values = []string{val.Value}
		case yaml.SequenceNode:
			for _, e := range val.Content {
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("config file %s: line %d: key %q: list items must be plain values", path, e.Line, key)
				}
				values = append(values, e.Value)
			}
		default:
			return fmt.Errorf("config file %s: line %d: key %q: expected a value or a list of values", path, val.Line, key)
		}
		isList := strings.Contains(f.Value.Type(), "Array") || strings.Contains(f.Value.Type(), "Slice")
		if len(values) != 1 && !isList {
			return fmt.Errorf("config file %s: line %d: key %q takes one value, got a list", path, val.Line, key)
		}
		for _, s := range values {
			if err := f.Value.Set(s); err != nil {
				return fmt.Errorf("config file %s: line %d: key %q: invalid value %q", path, val.Line, key, s)
			}
		}
		f.Changed = true
	}
	return nil
}
