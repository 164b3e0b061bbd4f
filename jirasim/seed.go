package jirasim

import (
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Seed generates a deterministic data set: spec.Projects projects (the first is SEC) and
// spec.Issues issues spread over them with a skew, a share of security issues (labelled
// "security", typed Bug or Vulnerability, half of them in SEC), a share of done issues, some
// resolved within the last 30 days. Seeded issues fire no webhooks. Generation appends in
// creation order and builds the indexes in bulk, so a million issues take a few seconds.
func (s *Sim) Seed(seed int64, spec SeedSpec) (SeedStats, error) {
	start := time.Now()
	if spec.Projects < 1 {
		return SeedStats{}, fmt.Errorf("seed: at least one project is required")
	}
	if spec.Issues < 0 || spec.Projects > 1_000_000 || spec.Issues > 20_000_000 {
		return SeedStats{}, fmt.Errorf("seed: %d projects / %d issues is out of range", spec.Projects, spec.Issues)
	}
	if spec.DoneShare == 0 {
		spec.DoneShare = 0.6
	}
	if spec.HistoryDays <= 0 {
		spec.HistoryDays = 730
	}
	if spec.KeyPrefix == "" {
		spec.KeyPrefix = "P"
	}
	spec.SecurityShare = clamp01(spec.SecurityShare)
	spec.DoneShare = clamp01(spec.DoneShare)
	spec.ResolvedRecentShare = clamp01(spec.ResolvedRecentShare)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0x73656564))

	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st

	// Projects.
	projIdx := make([]uint32, 0, spec.Projects)
	if p, ok := st.projKey["SEC"]; ok {
		projIdx = append(projIdx, p)
	} else {
		p, err := st.addProject(ProjectSpec{Key: "SEC", Name: "Security"})
		if err != nil {
			return SeedStats{}, fmt.Errorf("seed: %w", err)
		}
		st.projects[p].lead = s.admin + 1
		projIdx = append(projIdx, p)
	}
	width := max(4, len(strconv.Itoa(spec.Projects-1)))
	for n := 1; len(projIdx) < spec.Projects; n++ {
		key := fmt.Sprintf("%s%0*d", spec.KeyPrefix, width, n)
		if _, exists := st.projKey[key]; exists {
			continue
		}
		p, err := st.addProject(ProjectSpec{Key: key, Name: "Project " + key})
		if err != nil {
			return SeedStats{}, fmt.Errorf("seed: %w", err)
		}
		st.projects[p].lead = s.admin + 1
		projIdx = append(projIdx, p)
	}

	// Label sets, interned once.
	secSet := st.internLabels([]string{"security"})
	secScanSet := st.internLabels([]string{"scanner", "security"})
	otherSets := []uint32{
		st.internLabels([]string{"backend"}),
		st.internLabels([]string{"frontend"}),
		st.internLabels([]string{"tech-debt"}),
		st.internLabels([]string{"backend", "tech-debt"}),
	}

	now := s.Now()
	nowMs := now.UnixMilli()
	recentCut := now.Add(-30 * 24 * time.Hour).UnixMilli()
	first := now.Add(-time.Duration(spec.HistoryDays) * 24 * time.Hour).UnixMilli()
	last := now.Add(-time.Hour).UnixMilli()
	step := float64(last-first) / float64(max(spec.Issues, 1))
	if n := len(st.issues); n > 0 && st.issues[n-1].created > first {
		st.createdSorted = false
	}

	base := len(st.issues)
	st.issues = slices.Grow(st.issues, spec.Issues)
	var newRes []resEntry
	nProj := len(projIdx)
	for i := range spec.Issues {
		is := issue{reporter: s.admin + 1, priority: uint8(rng.IntN(int(numPriorities)))}
		// Monotone creation times: evenly spaced with jitter inside the step.
		is.created = first + int64(float64(i)*step+rng.Float64()*step*0.9)
		security := rng.Float64() < spec.SecurityShare
		if security {
			if rng.IntN(2) == 0 {
				is.project = projIdx[0]
			} else {
				is.project = projIdx[rng.IntN(nProj)]
			}
			is.itype = itBug
			if rng.IntN(2) == 0 {
				is.itype = itVulnerability
			}
			is.labels = secSet
			if rng.IntN(3) == 0 {
				is.labels = secScanSet
			}
		} else {
			// Quadratic skew: low-numbered projects are the busy ones.
			u := rng.Float64()
			is.project = projIdx[min(nProj-1, int(u*u*float64(nProj)))]
			is.itype = []uint8{itTask, itTask, itStory, itBug, itEpic}[rng.IntN(5)]
			if rng.IntN(10) < 3 {
				is.labels = otherSets[rng.IntN(len(otherSets))]
			}
		}
		if rng.Float64() < spec.DoneShare {
			switch x := rng.IntN(100); {
			case x < 80:
				is.status = stDone
			case x < 92:
				is.status = stWontDo
			default:
				is.status = stCancelled
			}
			is.res = statuses[is.status].naturalRes
			if is.status == stDone && rng.IntN(10) == 0 {
				is.res = resDuplicate
			}
			if rng.Float64() < spec.ResolvedRecentShare {
				is.resolved = recentCut + rng.Int64N(max(1, nowMs-recentCut))
			} else {
				hi := min(recentCut, nowMs)
				if hi <= is.created {
					is.resolved = is.created + rng.Int64N(max(1, nowMs-is.created))
				} else {
					is.resolved = is.created + rng.Int64N(hi-is.created)
				}
			}
			if is.resolved < is.created {
				is.resolved = is.created
			}
			is.updated = is.resolved
		} else {
			if rng.IntN(10) < 4 {
				is.status = stInProgress
			}
			is.updated = is.created + rng.Int64N(max(1, nowMs-is.created))
		}
		p := st.projects[is.project]
		is.num = uint32(len(p.issues) + 1)
		idx := uint32(base + i)
		p.issues = append(p.issues, idx)
		st.issues = append(st.issues, is)
		cell := cubeCell(is.itype, is.status, is.res)
		p.cube[cell]++
		st.siteCube[cell]++
		for _, l := range st.labelSets[is.labels] {
			st.labelIssues[l] = append(st.labelIssues[l], idx)
			cell := st.cellOf(l, &is)
			cell.byIdx = append(cell.byIdx, idx)
			if is.resolved != 0 {
				st.labelResolved[l] = append(st.labelResolved[l], resEntry{is.resolved, idx})
				cell.byRes = append(cell.byRes, resEntry{is.resolved, idx})
			}
		}
		if is.resolved != 0 {
			newRes = append(newRes, resEntry{is.resolved, idx})
		}
	}
	// Resolved-date indexes are sorted once at the end (appending kept label lists idx-sorted).
	st.resolvedIdx = append(st.resolvedIdx, newRes...)
	slices.SortFunc(st.resolvedIdx, resCmp)
	for l, list := range st.labelResolved {
		if !slices.IsSortedFunc(list, resCmp) {
			slices.SortFunc(list, resCmp)
			st.labelResolved[l] = list
		}
	}
	for _, lc := range st.labelCells {
		for _, cell := range lc {
			if !slices.IsSortedFunc(cell.byRes, resCmp) {
				slices.SortFunc(cell.byRes, resCmp)
			}
		}
	}
	elapsed := time.Since(start)
	return SeedStats{Projects: len(projIdx), Issues: spec.Issues, Elapsed: elapsed}, nil
}
