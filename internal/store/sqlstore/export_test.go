package sqlstore

// SchemaVersion is the schema version this store migrates to.
var SchemaVersion = len(migrations)
