"""AWS API Gateway OpenAPI exports served by fastgw: the documents, their Lambda code and backends."""
