-- Databases for the compose stack: the registry catalog, Prefect's and MLflow's.
CREATE USER retrain WITH PASSWORD 'retrain';
CREATE DATABASE registry OWNER retrain;
CREATE DATABASE mlflow OWNER retrain;
CREATE USER prefect WITH PASSWORD 'prefect';
CREATE DATABASE prefect OWNER prefect;
