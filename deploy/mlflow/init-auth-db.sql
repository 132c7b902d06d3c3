-- basic-auth keeps its users and permissions in their own database.
CREATE DATABASE mlflow_auth OWNER mlflow;
