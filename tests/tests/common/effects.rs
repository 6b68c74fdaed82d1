//! Picking a Manager's effects apart, as a host does.

use vpr_pal::Effect;
use vpr_proto::crypto::{self, Key};
use vpr_proto::msg::{Reply, Request};

/// The blinding secret the Release of update `seq` among `effects` carries.
pub fn secret_in(effects: &[Effect], seq: u64) -> Option<Key> {
    effects.iter().find_map(|e| match e {
        Effect::Release { seq: s, secret } if *s == seq => Some(*secret),
        _ => None,
    })
}

/// The (blinded) reply to `request` among `effects`.
pub fn reply_in(effects: &[Effect], request: &Request) -> Reply {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Reply { reply, .. }
                if reply.client == request.client && reply.seq == request.seq =>
            {
                Some(reply.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reply to seq {} in {effects:?}", request.seq))
}

/// What the host does with a released secret: unblinds a held reply.
pub fn unblind(mut reply: Reply, secret: &Key) -> Reply {
    crypto::xor(&mut reply.tag, &crypto::reply_blinder(secret, &reply.client, reply.seq));
    reply
}
