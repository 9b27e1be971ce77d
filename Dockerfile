FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY lms ./lms
COPY hub ./hub
COPY auth ./auth
RUN pip install --no-cache-dir ./lms .
# Key files: mount one volume here in every container of a deployment (hub and `rthub` commands alike).
ENV RTHUB_DATA_DIR=/var/lib/rthub
EXPOSE 8000
CMD ["rthub", "serve", "--host", "0.0.0.0", "--port", "8000"]
