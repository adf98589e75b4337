-- Tables and procedures of the MySQL / MariaDB persistence example (README.md here).
-- Create them once, with the mysql (or mariadb) client, which understands DELIMITER:
--   mysql -h 127.0.0.1 -u test -p test < examples/persistence/mysql/schema.sql
-- Safe to run again: tables are kept, procedures are replaced.
--
-- Client ids and topics are utf8mb4 with a binary collation: MQTT compares them byte for
-- byte ("a/B" and "a/b" are two topics). Payloads are LONGBLOB: any bytes, not only text.
-- Times are DATETIME(3) from FROM_UNIXTIME(ms / 1000), in the session time zone: Junction's
-- connections set it to '+00:00', so they are UTC.

-- One row per client: its last connect and disconnect.
CREATE TABLE IF NOT EXISTS mqtt_client (
    clientid        VARCHAR(255) NOT NULL PRIMARY KEY,
    username        VARCHAR(255),
    peerhost        VARCHAR(64),
    online          BOOLEAN NOT NULL,
    connected_at    DATETIME(3),
    disconnected_at DATETIME(3),
    reason          VARCHAR(255)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The client's current subscriptions (a row per topic filter).
CREATE TABLE IF NOT EXISTS mqtt_sub (
    clientid VARCHAR(255) NOT NULL,
    topic    VARCHAR(512) NOT NULL,
    qos      TINYINT NOT NULL,
    PRIMARY KEY (clientid, topic)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every message. The key is the broker's message id with the arrival time (message ids
-- start again when the broker restarts): the same for a retried batch, which INSERT
-- IGNORE then skips, and different for any two messages.
CREATE TABLE IF NOT EXISTS mqtt_msg (
    id      VARCHAR(64) NOT NULL,
    sender  VARCHAR(255),
    topic   VARCHAR(1024) NOT NULL,
    qos     TINYINT NOT NULL,
    retain  BOOLEAN NOT NULL,
    payload LONGBLOB,
    arrived DATETIME(3) NOT NULL,
    PRIMARY KEY (id, arrived),
    KEY mqtt_msg_topic_arrived (topic(255), arrived)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The retained message of each topic (an empty retained payload deletes it).
CREATE TABLE IF NOT EXISTS mqtt_retain (
    topic   VARCHAR(512) NOT NULL PRIMARY KEY,
    id      VARCHAR(64) NOT NULL,
    sender  VARCHAR(255),
    qos     TINYINT NOT NULL,
    payload LONGBLOB,
    arrived DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A rule action runs one statement, and SUBSCRIBE/UNSUBSCRIBE (or a retained message and
-- its clearing) must go through one action to stay in order. These procedures are that one
-- statement: an upsert or a delete, decided by their arguments.
DROP PROCEDURE IF EXISTS mqtt_sub_event;
DROP PROCEDURE IF EXISTS mqtt_retain_event;

DELIMITER //

-- SUBSCRIBE (p_subscribed true) upserts the row, UNSUBSCRIBE deletes it.
CREATE PROCEDURE mqtt_sub_event(
    IN p_clientid   VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    IN p_topic      VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    IN p_qos        TINYINT,
    IN p_subscribed BOOLEAN)
BEGIN
    IF p_subscribed THEN
        INSERT INTO mqtt_sub (clientid, topic, qos) VALUES (p_clientid, p_topic, p_qos)
        ON DUPLICATE KEY UPDATE qos = VALUES(qos);
    ELSE
        DELETE FROM mqtt_sub WHERE clientid = p_clientid AND topic = p_topic;
    END IF;
END //

-- A retained message upserts the topic's row; an empty payload deletes it.
CREATE PROCEDURE mqtt_retain_event(
    IN p_topic   VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    IN p_id      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    IN p_sender  VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    IN p_qos     TINYINT,
    IN p_payload LONGBLOB,
    IN p_arrived BIGINT)
BEGIN
    IF p_payload IS NULL OR LENGTH(p_payload) = 0 THEN
        DELETE FROM mqtt_retain WHERE topic = p_topic;
    ELSE
        INSERT INTO mqtt_retain (topic, id, sender, qos, payload, arrived)
        VALUES (p_topic, p_id, p_sender, p_qos, p_payload, FROM_UNIXTIME(p_arrived / 1000))
        ON DUPLICATE KEY UPDATE
            id = VALUES(id), sender = VALUES(sender), qos = VALUES(qos),
            payload = VALUES(payload), arrived = VALUES(arrived);
    END IF;
END //

DELIMITER ;
