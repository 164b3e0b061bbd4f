package evidence

import (
	"errors"
	"slices"
	"testing"
)

func TestCatalogueIntegrity(t *testing.T) {
	cat := Catalogue()
	if err := ValidateCatalogue(cat); err != nil {
		t.Fatalf("ValidateCatalogue(Catalogue()): %v", err)
	}
	ids := map[string]bool{}
	refs := map[string]bool{}
	supported := map[Type]int{}
	for _, c := range cat {
		if ids[c.ID] {
			t.Errorf("duplicate id %q", c.ID)
		}
		ids[c.ID] = true
		fr := string(c.Framework) + " " + c.Reference
		if refs[fr] {
			t.Errorf("duplicate framework reference %q", fr)
		}
		refs[fr] = true
		if c.Framework != FrameworkSOC2 && c.Framework != FrameworkISO27001 {
			t.Errorf("%s: unknown framework %q", c.ID, c.Framework)
		}
		if len(c.Rationale) < 40 {
			t.Errorf("%s: rationale %q is too short to explain anything to an auditor", c.ID, c.Rationale)
		}
		for _, typ := range c.Requires {
			if !typ.Valid() {
				t.Errorf("%s requires unknown type %q", c.ID, typ)
			}
			supported[typ]++
		}
	}
	for _, typ := range Types() {
		if supported[typ] == 0 {
			t.Errorf("evidence type %s supports no control", typ)
		}
	}
}

// TestCatalogueMapping pins the control set and the evidence each control requires. Changing a
// mapping changes what "covered" means for every tenant, so it must be a deliberate edit here too.
func TestCatalogueMapping(t *testing.T) {
	changeMgmt := []Type{TypeProjectInventory, TypeTicketVolume}
	sample := []Type{TypeSecurityTicketSample, TypeResolvedSecurityTicket}
	remediation := []Type{TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeSecurityRemediation}
	want := []struct {
		id        string
		framework Framework
		ref       string
		requires  []Type
	}{
		{"soc2.cc8.1", FrameworkSOC2, "CC8.1", changeMgmt},
		{"soc2.cc7.1", FrameworkSOC2, "CC7.1", sample},
		{"soc2.cc7.2", FrameworkSOC2, "CC7.2", sample},
		{"soc2.cc7.3", FrameworkSOC2, "CC7.3", sample},
		{"soc2.cc7.4", FrameworkSOC2, "CC7.4", remediation},
		{"iso27001-2022.a.8.32", FrameworkISO27001, "A.8.32", changeMgmt},
		{"iso27001-2022.a.8.8", FrameworkISO27001, "A.8.8", remediation},
		{"iso27001-2022.a.5.24", FrameworkISO27001, "A.5.24", []Type{TypeProjectInventory, TypeSecurityTicketSample, TypeResolvedSecurityTicket}},
		{"iso27001-2022.a.5.25", FrameworkISO27001, "A.5.25", sample},
		{"iso27001-2022.a.5.26", FrameworkISO27001, "A.5.26", remediation},
	}
	cat := Catalogue()
	if len(cat) != len(want) {
		t.Fatalf("catalogue has %d controls, want %d", len(cat), len(want))
	}
	for i, w := range want {
		c := cat[i]
		if c.ID != w.id || c.Framework != w.framework || c.Reference != w.ref || !slices.Equal(c.Requires, w.requires) {
			t.Errorf("control %d = %s %s %s %v, want %s %s %s %v", i, c.ID, c.Framework, c.Reference, c.Requires, w.id, w.framework, w.ref, w.requires)
		}
	}
}

func TestCatalogueReturnsCopies(t *testing.T) {
	a := Catalogue()
	a[0].Requires[0] = "tampered"
	a[1].ID = "tampered"
	b := Catalogue()
	if b[0].Requires[0] == "tampered" || b[1].ID == "tampered" {
		t.Fatal("Catalogue shares state between calls")
	}
	// Controls built from the same template must not share a backing array either.
	a = Catalogue()
	a[1].Requires[0] = "tampered"
	if a[2].Requires[0] == "tampered" {
		t.Fatal("controls share a Requires slice")
	}
}

func TestValidateCatalogueRejects(t *testing.T) {
	good := func() Control {
		return Control{ID: "x.1", Framework: FrameworkSOC2, Reference: "X1", Title: "t", Requires: []Type{TypeTicketVolume}, Rationale: "r"}
	}
	tests := []struct {
		name  string
		cat   []Control
		field string
	}{
		{"empty id", []Control{func() Control { c := good(); c.ID = ""; return c }()}, "catalogue[0].id"},
		{"upper-case id", []Control{func() Control { c := good(); c.ID = "SOC2.CC8.1"; return c }()}, "catalogue[0].id"},
		{"duplicate id", []Control{good(), good()}, "catalogue[1].id"},
		{"no framework", []Control{func() Control { c := good(); c.Framework = ""; return c }()}, "catalogue[0].framework"},
		{"no reference", []Control{func() Control { c := good(); c.Reference = ""; return c }()}, "catalogue[0].reference"},
		{"no title", []Control{func() Control { c := good(); c.Title = ""; return c }()}, "catalogue[0].title"},
		{"no rationale", []Control{func() Control { c := good(); c.Rationale = " "; return c }()}, "catalogue[0].rationale"},
		{"requires nothing", []Control{func() Control { c := good(); c.Requires = nil; return c }()}, "catalogue[0].requires"},
		{"unknown type", []Control{func() Control { c := good(); c.Requires = []Type{"jira.nope"}; return c }()}, "catalogue[0].requires[0]"},
		{"type twice", []Control{func() Control {
			c := good()
			c.Requires = []Type{TypeTicketVolume, TypeTicketVolume}
			return c
		}()}, "catalogue[0].requires[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateCatalogue(tt.cat)
			var ve *ValidationError
			if !errors.As(err, &ve) || !ve.Has(tt.field) {
				t.Fatalf("ValidateCatalogue = %v, want a problem with %q", err, tt.field)
			}
		})
	}
	if err := ValidateCatalogue([]Control{good()}); err != nil {
		t.Fatalf("valid catalogue rejected: %v", err)
	}
}
