package seal

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
)

// TestSealAADCoversEverything pins the associated data construction: the header (format and
// key version) and every binding field must change it. Today the explicit header checks in Open
// would also catch a changed header; authenticating it keeps that true once an org has several
// key versions.
func TestSealAADCoversEverything(t *testing.T) {
	b := Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: PurposePAT}
	header := []byte{formatV1, 0, 0, 0, 1}
	base := sealAAD(b, header)

	variants := map[string][]byte{
		"format version": sealAAD(b, []byte{2, 0, 0, 0, 1}),
		"key version":    sealAAD(b, []byte{formatV1, 0, 0, 0, 2}),
	}
	other := b
	other.OrgID = uuid.New()
	variants["org"] = sealAAD(other, header)
	other = b
	other.ConnectionID = uuid.New()
	variants["connection"] = sealAAD(other, header)
	other = b
	other.Purpose = PurposeAPIToken
	variants["purpose"] = sealAAD(other, header)
	// Swapping org and connection must not collide either.
	other = Binding{OrgID: b.ConnectionID, ConnectionID: b.OrgID, Purpose: b.Purpose}
	variants["swapped ids"] = sealAAD(other, header)
	for name, v := range variants {
		if bytes.Equal(v, base) {
			t.Errorf("changing the %s does not change the associated data", name)
		}
	}
	// Length prefixes: moving a byte between adjacent fields changes the encoding.
	if bytes.Equal(appendLP(appendLP(nil, []byte("ab")), []byte("c")), appendLP(appendLP(nil, []byte("a")), []byte("bc"))) {
		t.Error("length-prefixed encoding is ambiguous")
	}
}
