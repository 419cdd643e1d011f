package sqlstore

// SchemaVersion is the schema version this store migrates to.
var SchemaVersion = len(migrations)

// Batches counts the write batches the store's combiner has run.
func (s *Store) Batches() int64 { return s.comb.batches.Load() }
