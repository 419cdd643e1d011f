package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/ebb-ml/ebb/internal/registry"
)

// resolveChunk is how many references one query of ResolveRefs asks for
// (two parameters each), well under both databases' parameter limits.
const resolveChunk = 200

// vVersionColumns are versionColumns of the table aliased v.
var vVersionColumns = qualified("v", versionColumns)

// ResolveRefs implements registry.Store: numbered references and aliases
// are read apart, resolveChunk at a time, each chunk one query that joins
// a VALUES list of its (model, version) or (model, alias) pairs to the
// table on its primary key.
func (s *Store) ResolveRefs(ctx context.Context, refs []registry.Ref) (map[registry.Ref]registry.Version, error) {
	out := make(map[registry.Ref]registry.Version, len(refs))
	var numbered, aliased []registry.Ref
	seen := make(map[registry.Ref]bool, len(refs))
	for _, r := range refs {
		if seen[r] || r.Model == "" {
			continue
		}
		seen[r] = true
		switch {
		case r.Alias != "":
			aliased = append(aliased, r)
		case r.Version > 0:
			numbered = append(numbered, r)
		}
	}
	type aliasVersion struct {
		alias string
		v     registry.Version
	}
	scan := func(sc scanner) (aliasVersion, error) {
		var av aliasVersion
		v, err := scanVersion(prefixScanner{sc, &av.alias})
		av.v = v
		return av, err
	}
	// Each kind's query joins the VALUES list of its (model, version) or
	// (model, alias) pairs (refPairs; its second column's placeholder,
	// cast where PostgreSQL cannot infer the type) and selects the alias
	// ("" for a number) and the version's columns.
	for _, k := range []struct {
		what, second string
		value        func(registry.Ref) any
		query        string
		refs         []registry.Ref
	}{
		{"model versions", "CAST(? AS INTEGER)", func(r registry.Ref) any { return r.Version },
			`SELECT '', ` + vVersionColumns + ` FROM model_versions v
				JOIN (%s) r ON v.model = r.column1 AND v.version = r.column2`, numbered},
		{"model aliases", "?", func(r registry.Ref) any { return r.Alias },
			`SELECT a.name, ` + vVersionColumns + ` FROM model_aliases a
				JOIN (%s) r ON a.model = r.column1 AND a.name = r.column2
				JOIN model_versions v ON v.model = a.model AND v.version = a.version`, aliased},
	} {
		for rest := k.refs; len(rest) > 0; {
			chunk := rest[:min(len(rest), resolveChunk)]
			rest = rest[len(chunk):]
			pairs, args := refPairs(chunk, k.second, k.value)
			avs, err := list(ctx, s.read(), scan, fmt.Sprintf(k.query, pairs), args...)
			if err != nil {
				return nil, fmt.Errorf("resolve %d %s: %w", len(chunk), k.what, err)
			}
			for _, av := range avs {
				ref := registry.Ref{Model: av.v.Model, Alias: av.alias}
				if av.alias == "" {
					ref.Version = av.v.Version
				}
				out[ref] = av.v
			}
		}
	}
	return out, nil
}

// refPairs returns "VALUES (?, second), ..." for refs, a table whose
// columns column1 and column2 (the name both databases give them) are a
// ref's model and what value(ref) gives, with its arguments. second is
// the second column's placeholder, with a cast where PostgreSQL cannot
// infer its type.
func refPairs(refs []registry.Ref, second string, value func(registry.Ref) any) (string, []any) {
	var b strings.Builder
	b.WriteString("VALUES ")
	args := make([]any, 0, 2*len(refs))
	for i, r := range refs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, " + second + ")")
		args = append(args, r.Model, value(r))
	}
	return b.String(), args
}

// qualified prefixes each of a comma-separated column list with table.
func qualified(table, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = table + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// prefixScanner scans its first column into first and the rest with sc,
// so that a scan function for a table's columns reads a join's row that
// has one more column in front.
type prefixScanner struct {
	sc    scanner
	first any
}

func (p prefixScanner) Scan(dest ...any) error {
	return p.sc.Scan(append([]any{p.first}, dest...)...)
}
