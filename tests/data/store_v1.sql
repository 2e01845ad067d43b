-- A version-1 stillhouse store (schema_version 1, before the prediction log), made by the
-- store code of commit a546998 (src/stillhouse/data/store.py at that commit) through its API:
-- Store.for_task, start_run, add_examples, add_annotations (gold, and an LLM answer with
-- probabilities, a run id and a cache entry), finish_run, replace_review_queue ("audit"); then
-- dumped with sqlite3's iterdump. tests/data/test_store_v2.py loads it into a file.
BEGIN TRANSACTION;
CREATE TABLE annotations (
    example_id TEXT NOT NULL REFERENCES examples(id),
    annotator TEXT NOT NULL,
    answer TEXT NOT NULL,
    probs TEXT,
    info TEXT NOT NULL,
    created_at REAL NOT NULL,
    run_id TEXT,
    PRIMARY KEY (example_id, annotator)
);
INSERT INTO "annotations" VALUES('e1','gold','"positive"',NULL,'{}',1.79622181242814159393e+09,NULL);
INSERT INTO "annotations" VALUES('e2','gold','"negative"',NULL,'{}',1.79622181242815351486e+09,NULL);
INSERT INTO "annotations" VALUES('e3','llm:smollm2-135m@00000000','"positive"','{"positive": 0.7, "neutral": 0.2, "negative": 0.1}','{"score": -0.3}',1.0,'f45683e8d007');
CREATE TABLE examples (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    meta TEXT NOT NULL,
    gold TEXT,
    added_at REAL NOT NULL
);
INSERT INTO "examples" VALUES('e1','The food was wonderful and the staff were kind.','{"source": "survey"}','"positive"',1.79622181242757749559e+09);
INSERT INTO "examples" VALUES('e2','Cold soup, rude waiter, never again.','{}','"negative"',1.79622181242757749559e+09);
INSERT INTO "examples" VALUES('e3','It is a restaurant on the corner.','{}',NULL,1.79622181242757749559e+09);
CREATE TABLE llm_cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
);
INSERT INTO "llm_cache" VALUES('k1','{"answer": "positive"}',1.79622181242839217179e+09);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','1');
INSERT INTO "meta" VALUES('task_name','nusax-sentiment-en');
INSERT INTO "meta" VALUES('task_kind','classify');
INSERT INTO "meta" VALUES('task_labels','["positive", "neutral", "negative"]');
CREATE TABLE review_queue (
    queue TEXT NOT NULL,
    example_id TEXT NOT NULL REFERENCES examples(id),
    rank INTEGER NOT NULL,
    priority REAL NOT NULL,
    reasons TEXT NOT NULL,
    suggested TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (queue, example_id)
);
INSERT INTO "review_queue" VALUES('audit','e2',1,0.9,'["likely label error"]','neutral',1.79622181242863225938e+09);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    task_hash TEXT,
    data_hash TEXT,
    model TEXT,
    model_sha256 TEXT,
    seed INTEGER,
    versions TEXT NOT NULL,
    stats TEXT
);
INSERT INTO "runs" VALUES('f45683e8d007','annotate',1.79622181240932822228e+09,1.79622181242853188511e+09,'finished','tttttttt','dddddddd','smollm2-135m',NULL,0,'{"python": "3.11.7", "stillhouse": "0.1.0", "llama-cpp-python": "0.3.36", "numpy": "2.4.6", "pydantic": "2.14.4", "torch": "2.13.0+cpu", "sentence-transformers": "6.3.0", "transformers": "5.24.0", "scikit-learn": "1.9.1"}','{"labelled": 1}');
CREATE INDEX annotations_by_annotator ON annotations(annotator);
CREATE INDEX review_queue_by_rank ON review_queue(queue, rank);
COMMIT;
