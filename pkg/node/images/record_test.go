package images

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	tar := filepath.Join(dir, "a.tar")
	os.WriteFile(tar, []byte("image"), 0o644)
	st, _ := os.Stat(tar)
	path := filepath.Join(dir, "containerd", "record.json")

	if r := loadRecord(path); len(r) != 0 {
		t.Fatalf("missing record: %v", r)
	}
	r := record{tar: {Size: st.Size(), ModTime: st.ModTime().UnixNano(), Images: map[string]string{"x:1": "sha256:abc"}}}
	if err := r.save(path); err != nil {
		t.Fatal(err)
	}
	got := loadRecord(path)
	if e := got[tar]; !e.sameFile(st) || e.Images["x:1"] != "sha256:abc" {
		t.Fatalf("round trip: %+v", got)
	}

	// A touched or rewritten tarball is not the one imported.
	later := st.ModTime().Add(time.Second)
	os.Chtimes(tar, later, later)
	st2, _ := os.Stat(tar)
	if got[tar].sameFile(st2) {
		t.Error("touched tarball counted as unchanged")
	}
	os.WriteFile(tar, []byte("image2"), 0o644)
	os.Chtimes(tar, st.ModTime(), st.ModTime())
	st3, _ := os.Stat(tar)
	if got[tar].sameFile(st3) {
		t.Error("tarball of another size counted as unchanged")
	}
	// An entry without images never counts (nothing to check it against).
	if (entry{Size: st.Size(), ModTime: st.ModTime().UnixNano()}).sameFile(st) {
		t.Error("entry without images counted as unchanged")
	}

	// A damaged record is ignored: every tarball is imported again.
	os.WriteFile(path, []byte("{not json"), 0o600)
	if r := loadRecord(path); len(r) != 0 {
		t.Errorf("damaged record read as %v", r)
	}
}
