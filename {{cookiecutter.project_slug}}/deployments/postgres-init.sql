-- Run once by the postgres image on an empty volume (compose.yaml): the model registry's database, next to
-- the Prefect server's (POSTGRES_DB). The registry creates its tables on first use.
CREATE DATABASE registry OWNER recsys;
