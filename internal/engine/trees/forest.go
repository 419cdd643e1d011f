package trees

import (
	"fmt"
)

// node is one tree node in the flattened forest. Nodes of a tree are laid out
// in depth-first pre-order from its root, so an internal node's left child is
// the next node and only the right child needs an index.
type node struct {
	// cond is the split threshold (go left when value < cond), or the leaf
	// value when feature is negative.
	cond float32
	// feature is the feature index the node splits on, or -1 for a leaf.
	feature int32
	// right is the index, in forest.nodes, of the right child.
	right int32
	// defaultLeft says where a missing (NaN) value goes.
	defaultLeft bool
}

// forest is every tree of a model in one compact array.
type forest struct {
	nodes []node
	// roots[t] is the index in nodes of tree t's root.
	roots []int32
	// groups[t] is the output group (class) tree t adds to.
	groups []int32
	// weights[t] scales tree t's leaves (dart); nil for gbtree.
	weights []float32
}

// leaf returns the value of the leaf that row reaches in the tree rooted at
// nodes[i]. NaN takes the default branch; otherwise the comparison is
// value < cond in float32, as in xgboost.
func (f *forest) leaf(i int32, row []float32) float32 {
	nodes := f.nodes
	for {
		n := &nodes[i]
		if n.feature < 0 {
			return n.cond
		}
		v := row[n.feature]
		switch {
		case v != v: // NaN: missing
			if n.defaultLeft {
				i++
			} else {
				i = n.right
			}
		case v < n.cond:
			i++
		default:
			i = n.right
		}
	}
}

// add accumulates every tree's leaf for row into acc, one float32 per group,
// in tree order, exactly as xgboost's CPU predictor does.
func (f *forest) add(row, acc []float32) {
	if f.weights == nil {
		for t, root := range f.roots {
			acc[f.groups[t]] += f.leaf(root, row)
		}
		return
	}
	for t, root := range f.roots {
		// The conversion keeps the product rounded to float32 before the
		// sum, as in xgboost, even where the compiler would fuse them.
		acc[f.groups[t]] += float32(f.leaf(root, row) * f.weights[t])
	}
}

// appendTree checks tree t of the JSON model and appends it to f in
// pre-order. numFeature bounds the split indices; group is the output group.
func (f *forest) appendTree(t int, jt *jsonTree, numFeature int, group int32) error {
	n := len(jt.LeftChildren)
	if n == 0 {
		return fmt.Errorf("tree %d has no nodes", t)
	}
	if jt.Param != nil && jt.Param.NumNodes != "" {
		want, err := jt.Param.NumNodes.int(fmt.Sprintf("trees[%d].tree_param.num_nodes", t))
		if err != nil {
			return err
		}
		if want != n {
			return fmt.Errorf("tree %d is inconsistent: tree_param.num_nodes is %d but left_children has %d entries", t, want, n)
		}
	}
	if jt.Param != nil && jt.Param.SizeLeafVector != "" && jt.Param.SizeLeafVector != "0" {
		return fmt.Errorf("tree %d has vector leaves (size_leaf_vector %s): multi-output trees (multi_strategy=\"multi_output_tree\") are not supported; retrain with the default one_output_per_tree", t, jt.Param.SizeLeafVector)
	}
	for _, a := range []struct {
		name string
		len  int
	}{
		{"right_children", len(jt.RightChildren)},
		{"split_conditions", len(jt.SplitConditions)},
		{"split_indices", len(jt.SplitIndices)},
		{"default_left", len(jt.DefaultLeft)},
	} {
		if a.len != n {
			return fmt.Errorf("tree %d is inconsistent: left_children has %d entries but %s has %d", t, n, a.name, a.len)
		}
	}
	if len(jt.CategoriesNodes) > 0 {
		return errCategorical(t, jt.CategoriesNodes[0])
	}
	for i, st := range jt.SplitType {
		if st != 0 && i < n && jt.LeftChildren[i] != -1 {
			return errCategorical(t, i)
		}
	}

	root := int32(len(f.nodes))
	seen := make([]bool, n)
	// Each entry is a JSON node index and, for a right child, the position
	// of its parent in f.nodes (to fill in parent.right); -1 otherwise.
	type item struct{ old, parent int32 }
	stack := []item{{0, -1}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		i := it.old
		if seen[i] {
			return fmt.Errorf("tree %d is inconsistent: node %d is reached twice (the children arrays do not form a tree)", t, i)
		}
		seen[i] = true
		pos := int32(len(f.nodes))
		if it.parent >= 0 {
			f.nodes[it.parent].right = pos
		}
		left, right := jt.LeftChildren[i], jt.RightChildren[i]
		if left == -1 {
			f.nodes = append(f.nodes, node{cond: jt.SplitConditions[i], feature: -1})
			continue
		}
		if left < 0 || int(left) >= n || right < 0 || int(right) >= n {
			return fmt.Errorf("tree %d is inconsistent: node %d has children %d and %d but the tree has %d nodes", t, i, left, right, n)
		}
		feat := jt.SplitIndices[i]
		if feat < 0 || feat >= int64(numFeature) {
			return fmt.Errorf("tree %d is inconsistent: node %d splits on feature %d but the model has %d features (learner_model_param.num_feature)", t, i, feat, numFeature)
		}
		f.nodes = append(f.nodes, node{
			cond:        jt.SplitConditions[i],
			feature:     int32(feat),
			defaultLeft: bool(jt.DefaultLeft[i]),
		})
		stack = append(stack, item{right, pos}, item{left, -1})
	}
	f.roots = append(f.roots, root)
	f.groups = append(f.groups, group)
	return nil
}

func errCategorical(t, node int) error {
	return fmt.Errorf("tree %d has a categorical split at node %d: the trees engine supports numerical splits only; retrain without enable_categorical or one-hot encode the feature", t, node)
}
