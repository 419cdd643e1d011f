package api

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Bounds of a page of GET /v1/deployments.
const (
	// MaxPageLimit is the largest ?limit a list takes.
	MaxPageLimit = 1000
)

// Page is the body of GET /v1/deployments: List, and for a request that
// asked for a page (?limit) or a search (?search), where the next page
// starts and how many deployments match.
//
//	GET /v1/deployments                         every deployment (List)
//	GET /v1/deployments?limit=50                the first 50 by name; continue names the rest
//	GET /v1/deployments?limit=50&continue=TOKEN the next 50
//	GET /v1/deployments?search=fraud            those whose name or spec.model contains "fraud" (any case)
//
// Deployments are listed by name; a page is computed from the store's
// whole list, so a deployment created or deleted between two pages shifts
// nothing else: the token is the last name served, and the next page
// starts after it. Status is read only for the deployments of the page.
type Page struct {
	Items []serving.Deployment `json:"items"`
	// Continue, when set, is the token of the next page (?continue=).
	Continue string `json:"continue,omitempty"`
	// Total counts the deployments that match ?search (all of them
	// without), on every page; set only for a page or a search.
	Total *int `json:"total,omitempty"`
}

// pageQuery is what a list request asks for.
type pageQuery struct {
	limit  int    // 0: no limit
	after  string // names <= after are on earlier pages
	search string // lower case; "" matches all
}

func parsePageQuery(r *http.Request) (pageQuery, bool, error) {
	q := r.URL.Query()
	var pq pageQuery
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			return pq, false, &apiError{http.StatusBadRequest, codeMalformed,
				fmt.Sprintf("limit=%s: give a whole number from 1 to %d, or leave limit out for every deployment", quoteClipped(v), MaxPageLimit)}
		}
		pq.limit = n
	}
	if v := q.Get("continue"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(b) == 0 {
			return pq, false, &apiError{http.StatusBadRequest, codeMalformed,
				fmt.Sprintf("continue=%s is not a token this API gave: pass the continue value of the previous page as it is", quoteClipped(v))}
		}
		pq.after = string(b)
	}
	pq.search = strings.ToLower(strings.TrimSpace(q.Get("search")))
	paged := q.Has("limit") || q.Has("continue") || q.Has("search")
	return pq, paged, nil
}

// matches reports whether d matches the search.
func (pq pageQuery) matches(d serving.Deployment) bool {
	if pq.search == "" {
		return true
	}
	return strings.Contains(strings.ToLower(d.Name), pq.search) || strings.Contains(strings.ToLower(d.Spec.Model), pq.search)
}

// page cuts ds to pq: the deployments matching the search, by name, after
// pq.after, at most pq.limit; next is the token of the following page, ""
// on the last; total counts every match.
func (pq pageQuery) page(ds []serving.Deployment) (out []serving.Deployment, next string, total int) {
	matched := make([]serving.Deployment, 0, len(ds))
	for _, d := range ds {
		if pq.matches(d) {
			matched = append(matched, d)
		}
	}
	slices.SortFunc(matched, func(a, b serving.Deployment) int { return cmp.Compare(a.Name, b.Name) })
	total = len(matched)
	start := 0
	if pq.after != "" {
		start, _ = slices.BinarySearchFunc(matched, pq.after, func(d serving.Deployment, name string) int {
			if d.Name <= name {
				return -1
			}
			return 1
		})
	}
	out = matched[start:]
	if pq.limit > 0 && len(out) > pq.limit {
		out = out[:pq.limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(out[len(out)-1].Name))
	}
	return out, next, total
}

// listPage serves GET /v1/deployments: every deployment, or a page of them
// (Page).
func (h *Handler) listPage(w http.ResponseWriter, r *http.Request) {
	pq, paged, err := parsePageQuery(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if !paged {
		h.list(w, r)
		return
	}
	ds, err := h.st.ListDeployments(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	items, next, total := pq.page(ds)
	out := Page{Items: make([]serving.Deployment, 0, len(items)), Continue: next, Total: &total}
	for _, d := range items {
		out.Items = append(out.Items, h.withStatus(d))
	}
	writeJSON(w, http.StatusOK, out)
}
