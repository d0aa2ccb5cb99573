//! The Spin interfaces the component imports, bound to Redis and to the host's variables.

use redis::Value;
use wasmtime::component::Resource;

use crate::RequestState;

wasmtime::component::bindgen!({
    world: "spin-imports",
    path: "wit",
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
        "fermyon:spin/redis.connection": RedisConnection,
    },
});

use fermyon::spin::redis as spin_redis;
use wasi::config::store as config;
use wasi::keyvalue::store as kv;

/// An open key-value store: Spin's Redis backend keeps one store per Redis database.
pub struct Bucket(redis::Connection);

/// An outbound Redis connection the component opened.
pub struct RedisConnection(redis::Connection);

fn kv_error(e: impl std::fmt::Display) -> kv::Error {
    kv::Error::Other(e.to_string())
}

impl config::Host for RequestState {
    fn get(&mut self, key: String) -> Result<Option<String>, config::Error> {
        Ok(self.shared.variables.get(&key).cloned())
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, config::Error> {
        Ok(self
            .shared
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl kv::Host for RequestState {
    fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, kv::Error> {
        if identifier != "default" {
            return Err(kv::Error::NoSuchStore);
        }
        let connection = self.shared.kv.get_connection().map_err(kv_error)?;
        self.table.push(Bucket(connection)).map_err(kv_error)
    }
}

impl kv::HostBucket for RequestState {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, kv::Error> {
        let bucket = self.table.get_mut(&bucket).map_err(kv_error)?;
        redis::cmd("GET")
            .arg(&key)
            .query(&mut bucket.0)
            .map_err(kv_error)
    }

    fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), kv::Error> {
        let bucket = self.table.get_mut(&bucket).map_err(kv_error)?;
        redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .query(&mut bucket.0)
            .map_err(kv_error)
    }

    fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), kv::Error> {
        let bucket = self.table.get_mut(&bucket).map_err(kv_error)?;
        redis::cmd("DEL")
            .arg(&key)
            .query(&mut bucket.0)
            .map_err(kv_error)
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, kv::Error> {
        let bucket = self.table.get_mut(&bucket).map_err(kv_error)?;
        redis::cmd("EXISTS")
            .arg(&key)
            .query(&mut bucket.0)
            .map_err(kv_error)
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        _cursor: Option<String>,
    ) -> Result<kv::KeyResponse, kv::Error> {
        let bucket = self.table.get_mut(&bucket).map_err(kv_error)?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut bucket.0)
            .map_err(kv_error)?;
        Ok(kv::KeyResponse { keys, cursor: None })
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

fn redis_error(e: redis::RedisError) -> spin_redis::Error {
    spin_redis::Error::Other(e.to_string())
}

/// A Redis reply as Spin's outbound Redis hands it to a component: arrays flattened.
fn results(value: Value, out: &mut Vec<spin_redis::RedisResult>) {
    use spin_redis::RedisResult as R;
    match value {
        Value::Nil => out.push(R::Nil),
        Value::Int(i) => out.push(R::Int64(i)),
        Value::BulkString(bytes) => out.push(R::Binary(bytes)),
        Value::SimpleString(s) => out.push(R::Status(s)),
        Value::Okay => out.push(R::Status("OK".into())),
        Value::Array(values) | Value::Set(values) => {
            values.into_iter().for_each(|v| results(v, out))
        }
        other => out.push(R::Binary(format!("{other:?}").into_bytes())),
    }
}

impl spin_redis::Host for RequestState {}

impl spin_redis::HostConnection for RequestState {
    fn open(&mut self, address: String) -> Result<Resource<RedisConnection>, spin_redis::Error> {
        let client =
            redis::Client::open(address.as_str()).map_err(|_| spin_redis::Error::InvalidAddress)?;
        let connection = client.get_connection().map_err(redis_error)?;
        self.table
            .push(RedisConnection(connection))
            .map_err(|e| spin_redis::Error::Other(e.to_string()))
    }

    fn publish(
        &mut self,
        connection: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), spin_redis::Error> {
        self.run(connection, redis::cmd("PUBLISH").arg(channel).arg(payload))
            .map(drop)
    }

    fn get(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> Result<Option<Vec<u8>>, spin_redis::Error> {
        let c = self.conn(&connection)?;
        redis::cmd("GET").arg(key).query(c).map_err(redis_error)
    }

    fn set(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), spin_redis::Error> {
        self.run(connection, redis::cmd("SET").arg(key).arg(value))
            .map(drop)
    }

    fn incr(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> Result<i64, spin_redis::Error> {
        let c = self.conn(&connection)?;
        redis::cmd("INCR").arg(key).query(c).map_err(redis_error)
    }

    fn del(
        &mut self,
        connection: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> Result<u32, spin_redis::Error> {
        let c = self.conn(&connection)?;
        redis::cmd("DEL").arg(keys).query(c).map_err(redis_error)
    }

    fn sadd(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, spin_redis::Error> {
        let c = self.conn(&connection)?;
        redis::cmd("SADD")
            .arg(key)
            .arg(values)
            .query(c)
            .map_err(redis_error)
    }

    fn smembers(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> Result<Vec<String>, spin_redis::Error> {
        let c = self.conn(&connection)?;
        redis::cmd("SMEMBERS")
            .arg(key)
            .query(c)
            .map_err(redis_error)
    }

    fn srem(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, spin_redis::Error> {
        let c = self.conn(&connection)?;
        redis::cmd("SREM")
            .arg(key)
            .arg(values)
            .query(c)
            .map_err(redis_error)
    }

    fn execute(
        &mut self,
        connection: Resource<RedisConnection>,
        command: String,
        arguments: Vec<spin_redis::RedisParameter>,
    ) -> Result<Vec<spin_redis::RedisResult>, spin_redis::Error> {
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                spin_redis::RedisParameter::Int64(i) => cmd.arg(i),
                spin_redis::RedisParameter::Binary(bytes) => cmd.arg(bytes),
            };
        }
        self.run(connection, &cmd)
    }

    fn drop(&mut self, connection: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl RequestState {
    fn conn(
        &mut self,
        connection: &Resource<RedisConnection>,
    ) -> Result<&mut redis::Connection, spin_redis::Error> {
        self.table
            .get_mut(connection)
            .map(|c| &mut c.0)
            .map_err(|e| spin_redis::Error::Other(e.to_string()))
    }

    fn run(
        &mut self,
        connection: Resource<RedisConnection>,
        cmd: &redis::Cmd,
    ) -> Result<Vec<spin_redis::RedisResult>, spin_redis::Error> {
        let c = self.conn(&connection)?;
        let value: Value = cmd.query(c).map_err(redis_error)?;
        let mut out = Vec::new();
        results(value, &mut out);
        Ok(out)
    }
}
