package trees

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The structs below mirror the parts of XGBoost's JSON model format
// (doc/model.schema in the xgboost repository) that prediction needs. Fields
// XGBoost writes as strings holding numbers use number, which also accepts
// plain JSON numbers.

type jsonModel struct {
	Learner *jsonLearner `json:"learner"`
	Version []int        `json:"version"`
}

type jsonLearner struct {
	FeatureNames    []string         `json:"feature_names"`
	GradientBooster *jsonBooster     `json:"gradient_booster"`
	ModelParam      *jsonLearnerParm `json:"learner_model_param"`
	Objective       *jsonObjective   `json:"objective"`
}

type jsonLearnerParm struct {
	BaseScore  number `json:"base_score"`
	NumClass   number `json:"num_class"`
	NumFeature number `json:"num_feature"`
	NumTarget  number `json:"num_target"`
}

type jsonObjective struct {
	Name string `json:"name"`
}

// jsonBooster is gradient_booster: for gbtree the trees are in Model; for
// dart they are in GBTree.Model and WeightDrop scales each tree.
type jsonBooster struct {
	Name       string       `json:"name"`
	Model      *jsonGBTree  `json:"model"`
	GBTree     *jsonBooster `json:"gbtree"`
	WeightDrop []float32    `json:"weight_drop"`
}

type jsonGBTree struct {
	Param *struct {
		NumTrees number `json:"num_trees"`
	} `json:"gbtree_model_param"`
	TreeInfo []int      `json:"tree_info"`
	Trees    []jsonTree `json:"trees"`
}

type jsonTree struct {
	LeftChildren    []int32   `json:"left_children"`
	RightChildren   []int32   `json:"right_children"`
	SplitConditions []float32 `json:"split_conditions"`
	SplitIndices    []int64   `json:"split_indices"`
	DefaultLeft     []flag    `json:"default_left"`
	SplitType       []int     `json:"split_type"`
	CategoriesNodes []int     `json:"categories_nodes"`
	Param           *struct {
		NumNodes       number `json:"num_nodes"`
		SizeLeafVector number `json:"size_leaf_vector"`
	} `json:"tree_param"`
}

// number is a numeric field XGBoost writes as a string ("3", "5E-1"); a
// plain JSON number is accepted too. The zero value means absent.
type number string

func (n *number) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*n = number(s)
		return nil
	}
	var x json.Number
	if err := json.Unmarshal(b, &x); err != nil {
		return fmt.Errorf("want a number or a string holding one, got %s", b)
	}
	*n = number(x)
	return nil
}

// int reads n as a non-negative int; field names it in the error.
func (n number) int(field string) (int, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(string(n)), 10, 32)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("field %s is %q, want a non-negative integer", field, string(n))
	}
	return int(v), nil
}

// flag is a default_left entry: XGBoost 1.x and later write 0/1, some older
// writers true/false.
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	switch string(bytes.TrimSpace(b)) {
	case "1", "true":
		*f = true
	case "0", "false", "null":
		*f = false
	default:
		return fmt.Errorf("want 0, 1, true or false, got %s", b)
	}
	return nil
}

// parseBaseScore reads learner_model_param.base_score: "5E-1" (xgboost 1.x,
// 2.0) or a bracketed list "[5E-1]" / "[1E0,2E0]" (later versions).
func parseBaseScore(s string) ([]float32, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	if s == "" {
		return nil, fmt.Errorf("field learner.learner_model_param.base_score is empty")
	}
	parts := strings.Split(s, ",")
	out := make([]float32, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 32)
		if err != nil {
			return nil, fmt.Errorf("field learner.learner_model_param.base_score is %q, want a number such as \"5E-1\" or \"[5E-1]\"", s)
		}
		out[i] = float32(v)
	}
	return out, nil
}

// decodeJSON unmarshals data, turning the failure into a sentence about the
// file rather than about Go types.
func decodeJSON(data []byte) (*jsonModel, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("the file is empty: want an XGBoost model saved with Booster.save_model(\"model.json\")")
	}
	if !json.Valid(trimmed) {
		hint := ""
		if trimmed[0] == '{' {
			hint = " (binary UBJSON .ubj models are not supported: save the model with a .json name)"
		}
		var syn *json.SyntaxError
		var jm any
		if err := json.Unmarshal(trimmed, &jm); err != nil && errors.As(err, &syn) {
			// Not syn's text: it quotes the offending byte, and the
			// message reaches clients (a 503 naming why replicas fail).
			return nil, fmt.Errorf("not valid JSON at byte %d%s", syn.Offset, hint)
		}
		return nil, fmt.Errorf("not valid JSON%s", hint)
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("not an XGBoost model: the file holds JSON but not an object; save the model with Booster.save_model(\"model.json\")")
	}
	var m jsonModel
	if err := json.Unmarshal(trimmed, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("malformed XGBoost model: field %s holds a JSON %s where a %s was expected", te.Field, jsonKind(te.Value), te.Type)
		}
		return nil, fmt.Errorf("malformed XGBoost model: %v", err)
	}
	return &m, nil
}

// jsonKind is the kind of a json.UnmarshalTypeError's Value ("number",
// "string"), without the literal it may carry ("number 123...").
func jsonKind(value string) string {
	kind, _, _ := strings.Cut(value, " ")
	return kind
}
