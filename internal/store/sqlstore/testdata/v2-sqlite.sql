-- A database made by ebb's SQLite store before sqlstore (schema version 2),
-- with every kind of record; see compat_test.go.
CREATE TABLE schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	);
CREATE TABLE deployments (
		name       TEXT PRIMARY KEY,
		spec       TEXT NOT NULL,
		generation INTEGER NOT NULL,
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL
	);
CREATE TABLE replicas (
		id         TEXT PRIMARY KEY,
		deployment TEXT NOT NULL,
		handle     TEXT NOT NULL
	);
CREATE TABLE models (
		name           TEXT PRIMARY KEY,
		description    TEXT NOT NULL,
		created_at     TEXT NOT NULL,
		updated_at     TEXT NOT NULL,
		latest_version INTEGER NOT NULL
	);
CREATE TABLE model_versions (
		model            TEXT NOT NULL REFERENCES models (name),
		version          INTEGER NOT NULL,
		artifact_uri     TEXT NOT NULL,
		sha256           TEXT NOT NULL,
		size             INTEGER NOT NULL,
		packaging        TEXT NOT NULL,
		entry            TEXT NOT NULL,
		engine           TEXT NOT NULL,
		signature        TEXT NOT NULL,
		lineage          TEXT NOT NULL,
		tags             TEXT NOT NULL,
		created_at       TEXT NOT NULL,
		created_by       TEXT NOT NULL,
		state            TEXT NOT NULL,
		state_changed_at TEXT NOT NULL,
		last_used_at     TEXT NOT NULL,
		PRIMARY KEY (model, version)
	);
CREATE TABLE model_aliases (
		model      TEXT NOT NULL REFERENCES models (name),
		name       TEXT NOT NULL,
		version    INTEGER NOT NULL,
		updated_at TEXT NOT NULL,
		updated_by TEXT NOT NULL,
		PRIMARY KEY (model, name),
		FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
	);
CREATE TABLE model_alias_moves (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		model        TEXT NOT NULL,
		alias        TEXT NOT NULL,
		from_version INTEGER NOT NULL,
		to_version   INTEGER NOT NULL,
		moved_by     TEXT NOT NULL,
		moved_at     TEXT NOT NULL
	);
CREATE TABLE serving_history (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		deployment TEXT NOT NULL,
		model      TEXT NOT NULL,
		version    INTEGER NOT NULL,
		served_at  TEXT NOT NULL
	);
CREATE INDEX replicas_by_deployment ON replicas (deployment);
CREATE INDEX model_alias_moves_by_alias ON model_alias_moves (model, alias, id);
CREATE INDEX serving_history_by_deployment ON serving_history (deployment, id);
INSERT INTO schema_migrations (version, applied_at) VALUES (1, '2026-12-02T03:22:39.938888Z');
INSERT INTO schema_migrations (version, applied_at) VALUES (2, '2026-12-02T03:22:39.939424Z');
INSERT INTO deployments (name, spec, generation, created_at, updated_at) VALUES ('diabetes', '{"model":"examples/diabetes/model.json","engine":"trees","scaling":{"minReplicas":1,"maxReplicas":3,"targetConcurrency":8,"scaleToZeroAfter":"1m0s","stableWindow":"1m0s","panicWindowPercent":10,"panicThresholdPercent":200}}', 2, '2025-03-01T12:00:01.123456Z', '2025-03-01T12:00:03.123456Z');
INSERT INTO deployments (name, spec, generation, created_at, updated_at) VALUES ('iris', '{"model":"examples/iris/model.json","engine":"trees","scaling":{"minReplicas":0,"maxReplicas":3,"targetConcurrency":8,"scaleToZeroAfter":"1m0s","stableWindow":"1m0s","panicWindowPercent":10,"panicThresholdPercent":200}}', 1, '2025-03-01T12:00:02.123456Z', '2025-03-01T12:00:02.123456Z');
INSERT INTO replicas (id, deployment, handle) VALUES ('diabetes-1', 'diabetes', '{"spec":{"id":"diabetes-1","deployment":"diabetes","model":"m.json","engine":"trees"},"backend":"process","endpoint":"http://127.0.0.1:9001","scheduledAt":"2025-03-01T11:00:00.000005Z","startedAt":"2025-03-01T11:00:01.000005Z","state":{"pid":42}}');
INSERT INTO replicas (id, deployment, handle) VALUES ('gone-1', 'gone', '{"spec":{"id":"gone-1","deployment":"gone","model":"","engine":""},"backend":"process","endpoint":"http://127.0.0.1:9002","scheduledAt":"0001-01-01T00:00:00Z","startedAt":"0001-01-01T00:00:00Z"}');
INSERT INTO models (name, description, created_at, updated_at, latest_version) VALUES ('diabetes', 'regression on the diabetes set', '2025-03-01T12:00:04.123456Z', '2025-03-01T12:00:07.123456Z', 2);
INSERT INTO models (name, description, created_at, updated_at, latest_version) VALUES ('iris', '', '2025-03-01T12:00:05.123456Z', '2025-03-01T12:00:08.123456Z', 1);
INSERT INTO model_versions (model, version, artifact_uri, sha256, size, packaging, entry, engine, signature, lineage, tags, created_at, created_by, state, state_changed_at, last_used_at) VALUES ('diabetes', 1, 'file:///models/diabetes/1.json', 'abababababababababababababababababababababababababababababababab', 12345, '', '', 'trees', '{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,10]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1]}]}', '{"dataURI":"s3://d/diabetes.csv","parameters":{"depth":"4"},"metrics":{"r2":0.5}}', '{"team":"a"}', '2025-03-01T12:00:06.123456Z', 'alice', 'active', '2025-03-01T12:00:06.123456Z', '2025-03-02T08:00:00.000777Z');
INSERT INTO model_versions (model, version, artifact_uri, sha256, size, packaging, entry, engine, signature, lineage, tags, created_at, created_by, state, state_changed_at, last_used_at) VALUES ('diabetes', 2, 's3://m/diabetes/2.tar', 'abababababababababababababababababababababababababababababababab', 12345, 'tar', 'model.onnx', 'onnx', '{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,10]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1]}]}', '{"dataURI":"s3://d/diabetes.csv","parameters":{"depth":"4"},"metrics":{"r2":0.5}}', '{"stage":"canary"}', '2025-03-01T12:00:07.123456Z', 'alice', 'active', '2025-03-01T12:00:07.123456Z', '');
INSERT INTO model_versions (model, version, artifact_uri, sha256, size, packaging, entry, engine, signature, lineage, tags, created_at, created_by, state, state_changed_at, last_used_at) VALUES ('iris', 1, 'file:///iris.json', '00', 0, '', '', 'trees', '{}', '{}', 'null', '2025-03-01T12:00:08.123456Z', '', 'warned', '2025-03-03T00:00:00Z', '');
INSERT INTO model_aliases (model, name, version, updated_at, updated_by) VALUES ('diabetes', 'champion', 2, '2025-03-01T12:00:10.123456Z', 'bob');
INSERT INTO model_alias_moves (id, model, alias, from_version, to_version, moved_by, moved_at) VALUES (1, 'diabetes', 'champion', 0, 1, 'alice', '2025-03-01T12:00:09.123456Z');
INSERT INTO model_alias_moves (id, model, alias, from_version, to_version, moved_by, moved_at) VALUES (2, 'diabetes', 'champion', 1, 2, 'bob', '2025-03-01T12:00:10.123456Z');
INSERT INTO model_alias_moves (id, model, alias, from_version, to_version, moved_by, moved_at) VALUES (3, 'diabetes', 'old', 0, 1, 'alice', '2025-03-01T12:00:11.123456Z');
INSERT INTO model_alias_moves (id, model, alias, from_version, to_version, moved_by, moved_at) VALUES (4, 'diabetes', 'old', 1, 0, 'carol', '2025-03-01T12:00:12.123456Z');
INSERT INTO serving_history (id, deployment, model, version, served_at) VALUES (1, 'diabetes', 'diabetes', 1, '2025-03-01T13:00:00.000001Z');
INSERT INTO serving_history (id, deployment, model, version, served_at) VALUES (2, 'diabetes', 'diabetes', 2, '2025-03-01T14:00:00Z');
INSERT INTO sqlite_sequence (name, seq) VALUES ('model_alias_moves', 4);
INSERT INTO sqlite_sequence (name, seq) VALUES ('serving_history', 2);
