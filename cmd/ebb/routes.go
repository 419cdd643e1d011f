package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/serving"
)

// The route objects' commands (shard groups): `ebb routes create|apply|get|
// delete`, and `ebb get routes`, `ebb delete route NAME` beside the other
// resources.

// routeManifestKind is the kind of a route in the cluster.
const routeManifestKind = "ModelRoute"

func newRoutesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "routes",
		Aliases: []string{"route"},
		Short:   "Create, list and delete route objects: one name that sends each request to a deployment by a header or an input",
		Long: `A route object (a shard group) is a name clients call as if it were a
deployment: each request goes to the deployment a rule picks by the value of
a header (--header) or of an input tensor's first element (--input), else to
the default. Each target is an ordinary deployment that scales 0:N on its own;
the answer names it in the header Ebb-Deployment.

A route may not take a deployment's name. A request through a route needs a
token with predict on the deployment it reaches.`,
	}
	addServerFlag(cmd)
	cmd.AddCommand(newRoutesCreateCmd(), newRoutesApplyCmd(), newRoutesGetCmd(&getFlags{}), newRoutesDeleteCmd())
	return cmd
}

func newRoutesCreateCmd() *cobra.Command {
	var (
		header, input, def string
		rules              []string
		output             string
	)
	cmd := &cobra.Command{
		Use:   "create NAME (--header NAME | --input NAME) [--rule VALUE=DEPLOYMENT...] [--default DEPLOYMENT]",
		Short: "Create a route object",
		Example: `  ebb routes create classify --header X-Region --rule eu=classify-eu --rule us=classify-us --default classify-global
  ebb routes create tasks --input task --rule vision=vision-model --rule text=text-model`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			r, err := routeFromFlags(args[0], header, input, def, rules)
			if err != nil {
				return err
			}
			created, err := newAPIClient(cmd).CreateRoute(cmd.Context(), r)
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), output, created, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "route/%s created\n", created.Name)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&header, "header", "", "match on this request header's value (gRPC: the metadata key), e.g. X-Region")
	f.StringVar(&input, "input", "", "match on the first element of this input tensor, e.g. task")
	f.StringArrayVar(&rules, "rule", nil, "VALUE=DEPLOYMENT: requests with this value go to this deployment; repeat for more")
	f.StringVar(&def, "default", "", "deployment of requests that no rule matches")
	addOutputFlag(cmd, &output)
	return cmd
}

// routeFromFlags builds route name from create's flags; the server
// validates the rest.
func routeFromFlags(name, header, input, def string, rules []string) (serving.Route, error) {
	if (header == "") == (input == "") {
		return serving.Route{}, errors.New("give exactly one of --header NAME or --input NAME: where each request's value is read")
	}
	r := serving.Route{Name: name, Spec: serving.RouteSpec{Match: serving.RouteMatch{Header: header, Input: input}, Default: def}}
	for _, rule := range rules {
		value, dep, ok := strings.Cut(rule, "=")
		if !ok || value == "" || dep == "" {
			return serving.Route{}, fmt.Errorf("--rule %q: write VALUE=DEPLOYMENT, such as eu=classify-eu", rule)
		}
		r.Spec.Rules = append(r.Spec.Rules, serving.RouteRule{Value: value, Deployment: dep})
	}
	if len(r.Spec.Rules) == 0 && def == "" {
		return serving.Route{}, errors.New("give at least one --rule VALUE=DEPLOYMENT or a --default DEPLOYMENT")
	}
	return r, nil
}

func newRoutesApplyCmd() *cobra.Command {
	return newApplyFileCmd(applyFile{
		noun: "route",
		docs: routeDocs,
		apply: func(ctx context.Context, c *apiclient.Client, name string, body []byte) (bool, error) {
			_, created, err := c.ApplyRouteJSON(ctx, name, body)
			return created, err
		},
	}, "Create route objects, or replace their rules, from a file",
		`Apply reads one or more routes, YAML or JSON, separated by "---" lines: each
in ebb's form (name and spec, as `+"`ebb get routes NAME -o yaml`"+` prints it) or a
ModelRoute manifest (apiVersion serving.ebb.dev/v1alpha1, kind ModelRoute,
metadata.name, spec), as kubectl applies it.`,
		`  ebb routes apply -f classify-route.yaml`)
}

// routeDocs reads data, YAML documents or one JSON object, into routes.
func routeDocs(data []byte) ([]specDoc, error) {
	return specDocs(data, routeDoc1, "holds no route: write one with name and spec, or a ModelRoute manifest")
}

// routeDoc1 converts one document, as JSON, to ebb's form.
func routeDoc1(body []byte) (specDoc, error) {
	return objectDoc(body, objectForm{kind: routeManifestKind, noun: "route", example: "classify",
		spec: "the route's match, rules and default", elsewhere: "deployments go to `ebb deploy -f`"})
}

// objectForm says what objectDoc reads: an object of ebb's, in ebb's form
// (name and spec) or as its Kubernetes manifest (apiVersion
// serving.ebb.dev/v1alpha1, kind, metadata.name, spec).
type objectForm struct {
	kind, noun string
	example    string // a name, for the hint
	spec       string // what its spec holds, for the hint
	elsewhere  string // where other kinds go
}

// objectDoc converts one document, as JSON, to ebb's form.
func objectDoc(body []byte, f objectForm) (specDoc, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return specDoc{}, fmt.Errorf("must hold one %s, a mapping with name and spec (or a %s manifest)", f.noun, f.kind)
	}
	_, hasKind := top["kind"]
	_, hasMetadata := top["metadata"]
	if !hasKind && !hasMetadata {
		name, err := stringField(top, "name", fmt.Sprintf(`add a line such as "name: %s" at the top`, f.example))
		return specDoc{name: name, body: body}, err
	}
	kind, err := stringField(top, "kind", "kind: "+f.kind)
	if err != nil {
		return specDoc{}, err
	}
	if kind != f.kind {
		return specDoc{}, fmt.Errorf("kind %s is not a %s: use kind %s (%s)", kind, f.noun, f.kind, f.elsewhere)
	}
	if v, ok := top["apiVersion"]; ok && string(v) != `"`+manifestAPIVersion+`"` {
		return specDoc{}, fmt.Errorf("apiVersion %s is not %s", v, manifestAPIVersion)
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(top["metadata"], &meta); err != nil {
		return specDoc{}, errors.New("metadata must be a mapping with name")
	}
	name, err := stringField(meta, "name", "add metadata.name")
	if err != nil {
		return specDoc{}, fmt.Errorf("metadata.%w", err)
	}
	spec, ok := top["spec"]
	if !ok {
		return specDoc{}, fmt.Errorf("spec is required: %s", f.spec)
	}
	return specDoc{name: name, body: mustJSON(map[string]json.RawMessage{"name": mustJSON(name), "spec": spec})}, nil
}

func newRoutesGetCmd(f *getFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get [NAME]",
		Aliases: []string{"list"},
		Short:   "List route objects, or show one with its rules",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getRoutes(cmd, f, args)
		},
	}
	addOutputFlag(cmd, &f.output)
	return cmd
}

// newGetRoutesCmd is `ebb get routes [NAME]`.
func newGetRoutesCmd(f *getFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "routes [NAME]",
		Aliases: []string{"route"},
		Short:   "List route objects, or show one with its rules",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getRoutes(cmd, f, args)
		},
	}
}

func getRoutes(cmd *cobra.Command, f *getFlags, args []string) error {
	if err := checkOutput(f.output); err != nil {
		return err
	}
	if f.watch {
		return errors.New("--watch follows deployments and models; routes change only when you change them")
	}
	c, w, now := newAPIClient(cmd), cmd.OutOrStdout(), time.Now()
	if len(args) == 1 {
		r, err := c.GetRoute(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		return writeOutput(w, f.output, r, func(w io.Writer) error { return writeRouteDetail(w, r, now) })
	}
	rs, err := c.ListRoutes(cmd.Context())
	if err != nil {
		return err
	}
	return writeOutput(w, f.output, api.RouteList{Items: rs}, func(w io.Writer) error {
		if len(rs) == 0 {
			_, err := fmt.Fprintln(w, "No routes. Create one with `ebb routes create NAME --header X-Region --rule eu=DEPLOYMENT`.")
			return err
		}
		rows := make([][]string, len(rs))
		for i, r := range rs {
			rows[i] = []string{r.Name, r.Spec.Match.KeyName(), fmt.Sprint(len(r.Spec.Rules)), orNone(r.Spec.Default), age(now, r.CreatedAt)}
		}
		return writeRows(w, []string{"NAME", "MATCH", "RULES", "DEFAULT", "AGE"}, rows)
	})
}

// writeRouteDetail shows one route: its match, each rule and the default.
func writeRouteDetail(w io.Writer, r serving.Route, now time.Time) error {
	fmt.Fprintf(w, "Name:        %s\nMatch:       %s\nDefault:     %s\nGeneration:  %d\nAge:         %s\n\n",
		r.Name, r.Spec.Match.KeyName(), orNone(r.Spec.Default), r.Generation, age(now, r.CreatedAt))
	rows := make([][]string, 0, len(r.Spec.Rules))
	for _, rule := range r.Spec.Rules {
		rows = append(rows, []string{rule.Value, rule.Deployment})
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No rules: every request goes to the default.")
		return err
	}
	return writeRows(w, []string{"VALUE", "DEPLOYMENT"}, rows)
}

func newRoutesDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a route object; its deployments stay",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return deleteRoute(cmd, newAPIClient(cmd), args[0])
		},
	}
}

func deleteRoute(cmd *cobra.Command, c *apiclient.Client, name string) error {
	if err := c.DeleteRoute(cmd.Context(), name); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "route/%s deleted\n", name)
	return nil
}
