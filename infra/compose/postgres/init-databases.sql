-- Databases of the platform, created once on the first start of the PostgreSQL volume.
CREATE DATABASE mlflow OWNER lpm;
CREATE DATABASE dagster OWNER lpm;
CREATE DATABASE lpm_catalog OWNER lpm;
