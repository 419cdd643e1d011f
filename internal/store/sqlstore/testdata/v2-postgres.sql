-- A database made by ebb's PostgreSQL store before sqlstore (schema version 2),
-- with every kind of record (pg_dump --inserts, psql's \restrict lines
-- removed); see compat_test.go.
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: deployments; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.deployments (
    name text NOT NULL COLLATE pg_catalog."C",
    spec jsonb NOT NULL,
    generation bigint NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL
);


--
-- Name: model_alias_moves; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.model_alias_moves (
    id bigint NOT NULL,
    model text NOT NULL,
    alias text NOT NULL,
    from_version integer NOT NULL,
    to_version integer NOT NULL,
    moved_by text NOT NULL,
    moved_at timestamp with time zone NOT NULL
);


--
-- Name: model_alias_moves_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.model_alias_moves ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.model_alias_moves_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: model_aliases; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.model_aliases (
    model text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL COLLATE pg_catalog."C",
    version integer NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    updated_by text NOT NULL
);


--
-- Name: model_versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.model_versions (
    model text NOT NULL COLLATE pg_catalog."C",
    version integer NOT NULL,
    artifact_uri text NOT NULL,
    sha256 text NOT NULL,
    size bigint NOT NULL,
    packaging text NOT NULL,
    entry text NOT NULL,
    engine text NOT NULL,
    signature jsonb NOT NULL,
    lineage jsonb NOT NULL,
    tags jsonb NOT NULL,
    created_at timestamp with time zone NOT NULL,
    created_by text NOT NULL,
    state text NOT NULL,
    state_changed_at timestamp with time zone NOT NULL,
    last_used_at timestamp with time zone
);


--
-- Name: models; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.models (
    name text NOT NULL COLLATE pg_catalog."C",
    description text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    latest_version integer NOT NULL
);


--
-- Name: replicas; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.replicas (
    id text NOT NULL COLLATE pg_catalog."C",
    deployment text NOT NULL,
    handle jsonb NOT NULL
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    applied_at timestamp with time zone NOT NULL
);


--
-- Name: serving_history; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.serving_history (
    id bigint NOT NULL,
    deployment text NOT NULL,
    model text NOT NULL,
    version integer NOT NULL,
    served_at timestamp with time zone NOT NULL
);


--
-- Name: serving_history_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.serving_history ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.serving_history_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Data for Name: deployments; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.deployments VALUES ('iris', '{"model": "examples/iris/model.json", "engine": "trees", "scaling": {"maxReplicas": 3, "minReplicas": 0, "stableWindow": "1m0s", "scaleToZeroAfter": "1m0s", "targetConcurrency": 8, "panicWindowPercent": 10, "panicThresholdPercent": 200}}', 1, '2025-03-01 12:00:02.123456+00', '2025-03-01 12:00:02.123456+00');
INSERT INTO public.deployments VALUES ('diabetes', '{"model": "examples/diabetes/model.json", "engine": "trees", "scaling": {"maxReplicas": 3, "minReplicas": 1, "stableWindow": "1m0s", "scaleToZeroAfter": "1m0s", "targetConcurrency": 8, "panicWindowPercent": 10, "panicThresholdPercent": 200}}', 2, '2025-03-01 12:00:01.123456+00', '2025-03-01 12:00:03.123456+00');


--
-- Data for Name: model_alias_moves; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.model_alias_moves OVERRIDING SYSTEM VALUE VALUES (1, 'diabetes', 'champion', 0, 1, 'alice', '2025-03-01 12:00:09.123456+00');
INSERT INTO public.model_alias_moves OVERRIDING SYSTEM VALUE VALUES (2, 'diabetes', 'champion', 1, 2, 'bob', '2025-03-01 12:00:10.123456+00');
INSERT INTO public.model_alias_moves OVERRIDING SYSTEM VALUE VALUES (3, 'diabetes', 'old', 0, 1, 'alice', '2025-03-01 12:00:11.123456+00');
INSERT INTO public.model_alias_moves OVERRIDING SYSTEM VALUE VALUES (4, 'diabetes', 'old', 1, 0, 'carol', '2025-03-01 12:00:12.123456+00');


--
-- Data for Name: model_aliases; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.model_aliases VALUES ('diabetes', 'champion', 2, '2025-03-01 12:00:10.123456+00', 'bob');


--
-- Data for Name: model_versions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.model_versions VALUES ('diabetes', 1, 'file:///models/diabetes/1.json', 'abababababababababababababababababababababababababababababababab', 12345, '', '', 'trees', '{"inputs": [{"name": "x", "shape": [-1, 10], "datatype": "FP32"}], "outputs": [{"name": "y", "shape": [-1], "datatype": "FP32"}]}', '{"dataURI": "s3://d/diabetes.csv", "metrics": {"r2": 0.5}, "parameters": {"depth": "4"}}', '{"team": "a"}', '2025-03-01 12:00:06.123456+00', 'alice', 'active', '2025-03-01 12:00:06.123456+00', '2025-03-02 08:00:00.000777+00');
INSERT INTO public.model_versions VALUES ('iris', 1, 'file:///iris.json', '00', 0, '', '', 'trees', '{}', '{}', 'null', '2025-03-01 12:00:08.123456+00', '', 'warned', '2025-03-03 00:00:00+00', NULL);
INSERT INTO public.model_versions VALUES ('diabetes', 2, 's3://m/diabetes/2.tar', 'abababababababababababababababababababababababababababababababab', 12345, 'tar', 'model.onnx', 'onnx', '{"inputs": [{"name": "x", "shape": [-1, 10], "datatype": "FP32"}], "outputs": [{"name": "y", "shape": [-1], "datatype": "FP32"}]}', '{"dataURI": "s3://d/diabetes.csv", "metrics": {"r2": 0.5}, "parameters": {"depth": "4"}}', '{"stage": "canary"}', '2025-03-01 12:00:07.123456+00', 'alice', 'active', '2025-03-01 12:00:07.123456+00', NULL);


--
-- Data for Name: models; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.models VALUES ('diabetes', 'regression on the diabetes set', '2025-03-01 12:00:04.123456+00', '2025-03-01 12:00:07.123456+00', 2);
INSERT INTO public.models VALUES ('iris', '', '2025-03-01 12:00:05.123456+00', '2025-03-01 12:00:08.123456+00', 1);


--
-- Data for Name: replicas; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.replicas VALUES ('diabetes-1', 'diabetes', '{"spec": {"id": "diabetes-1", "model": "m.json", "engine": "trees", "deployment": "diabetes"}, "state": {"pid": 42}, "backend": "process", "endpoint": "http://127.0.0.1:9001", "startedAt": "2025-03-01T11:00:01.000005Z", "scheduledAt": "2025-03-01T11:00:00.000005Z"}');
INSERT INTO public.replicas VALUES ('gone-1', 'gone', '{"spec": {"id": "gone-1", "model": "", "engine": "", "deployment": "gone"}, "backend": "process", "endpoint": "http://127.0.0.1:9002", "startedAt": "0001-01-01T00:00:00Z", "scheduledAt": "0001-01-01T00:00:00Z"}');


--
-- Data for Name: schema_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.schema_migrations VALUES (1, '2026-12-02 03:22:41.584669+00');
INSERT INTO public.schema_migrations VALUES (2, '2026-12-02 03:22:41.599156+00');


--
-- Data for Name: serving_history; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.serving_history OVERRIDING SYSTEM VALUE VALUES (1, 'diabetes', 'diabetes', 1, '2025-03-01 13:00:00.000001+00');
INSERT INTO public.serving_history OVERRIDING SYSTEM VALUE VALUES (2, 'diabetes', 'diabetes', 2, '2025-03-01 14:00:00+00');


--
-- Name: model_alias_moves_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.model_alias_moves_id_seq', 4, true);


--
-- Name: serving_history_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.serving_history_id_seq', 2, true);


--
-- Name: deployments deployments_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deployments
    ADD CONSTRAINT deployments_pkey PRIMARY KEY (name);


--
-- Name: model_alias_moves model_alias_moves_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.model_alias_moves
    ADD CONSTRAINT model_alias_moves_pkey PRIMARY KEY (id);


--
-- Name: model_aliases model_aliases_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.model_aliases
    ADD CONSTRAINT model_aliases_pkey PRIMARY KEY (model, name);


--
-- Name: model_versions model_versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.model_versions
    ADD CONSTRAINT model_versions_pkey PRIMARY KEY (model, version);


--
-- Name: models models_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.models
    ADD CONSTRAINT models_pkey PRIMARY KEY (name);


--
-- Name: replicas replicas_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.replicas
    ADD CONSTRAINT replicas_pkey PRIMARY KEY (id);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: serving_history serving_history_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.serving_history
    ADD CONSTRAINT serving_history_pkey PRIMARY KEY (id);


--
-- Name: model_alias_moves_by_alias; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX model_alias_moves_by_alias ON public.model_alias_moves USING btree (model, alias, id);


--
-- Name: replicas_by_deployment; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX replicas_by_deployment ON public.replicas USING btree (deployment);


--
-- Name: serving_history_by_deployment; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX serving_history_by_deployment ON public.serving_history USING btree (deployment, id);


--
-- Name: model_aliases model_aliases_model_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.model_aliases
    ADD CONSTRAINT model_aliases_model_fkey FOREIGN KEY (model) REFERENCES public.models(name);


--
-- Name: model_aliases model_aliases_model_version_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.model_aliases
    ADD CONSTRAINT model_aliases_model_version_fkey FOREIGN KEY (model, version) REFERENCES public.model_versions(model, version);


--
-- Name: model_versions model_versions_model_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.model_versions
    ADD CONSTRAINT model_versions_model_fkey FOREIGN KEY (model) REFERENCES public.models(name);


--
-- PostgreSQL database dump complete
--


