package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newPredictCmd() *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:   "predict NAME --data JSON|@FILE",
		Short: "Send an inference request (Open Inference Protocol v2) to a deployment",
		Long: `Send an Open Inference Protocol v2 inference request to a deployment and
print the response. A deployment scaled to zero starts a replica first; the
request waits for it.`,
		Example: `  ebb predict diabetes --data @examples/diabetes/request.json
  ebb predict diabetes --data '{"inputs":[{"name":"x","shape":[1,10],"datatype":"FP32","data":[[0.03,0.05,0.06,0.02,-0.04,-0.03,-0.04,0.0,0.02,-0.02]]}]}'
  cat request.json | ebb predict diabetes --data @-`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return errors.New("no request given: pass it with --data JSON or --data @FILE (@- reads standard input)")
			}
			body := []byte(data)
			if file, ok := strings.CutPrefix(data, "@"); ok {
				var err error
				if body, err = readInput(cmd, file); err != nil {
					return err
				}
			}
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				return fmt.Errorf("--data is not valid JSON: %w", err)
			}
			resp, err := newAPIClient(cmd).Infer(cmd.Context(), args[0], body)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(resultText(resp))
			return err
		},
	}
	cmd.Flags().StringVarP(&data, "data", "d", "", "inference request as JSON, or @FILE to read it from a file (@- for standard input)")
	addServerFlag(cmd)
	return cmd
}
